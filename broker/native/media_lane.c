// The shared-memory regions of the media lane: sealed memfds the broker maps and a worker on the
// same host maps too (through /proc/<broker pid>/fd/<fd>), so media bytes cross the process
// boundary without gRPC.
//
// Why sealed: a worker holds the same file open read-write. Had it shrunk the file, the broker's
// next access past the new end would be SIGBUS, ending every session. F_SEAL_SHRINK and
// F_SEAL_GROW fix the size for good, and F_SEAL_SEAL keeps a worker from adding F_SEAL_WRITE or
// F_SEAL_FUTURE_WRITE, which would make the broker's writes fail. What a worker can still do, write
// any bytes at any time, is harmless to the broker: it only ever reads values out of a region
// (samples, pixels, a cursor it clamps), never addresses or sizes.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// Creates a region of `size` bytes (zero-filled), maps it at *address; returns its fd, or -errno.
int lml_create(uint64_t size, uint64_t *address) {
  int fd = memfd_create("livekit-ffi-broker-lane", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  int err = 0;
  if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    err = errno;
  } else {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      *address = (uint64_t)(uintptr_t)p;
      return fd;
    }
    err = errno;
  }
  close(fd);
  return -err;
}

void lml_destroy(int fd, uint64_t address, uint64_t size) {
  munmap((void *)(uintptr_t)address, size);
  close(fd);
}

// Copies `len` bytes between two native addresses (library memory into a region).
void lml_copy(uint64_t dst, uint64_t src, size_t len) {
  memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len);
}

// Reads the uint64 a worker stores at `address` (a region's cursor), as one atomic load.
uint64_t lml_load_u64(uint64_t address) {
  return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)address, memory_order_acquire);
}

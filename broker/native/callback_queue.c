// The callback liblivekit_ffi calls from its native threads, and the queue behind it.
//
// Why C: a koffi JS callback makes the calling native thread wait until the JS loop has run it,
// which breaks the library's "must be threadsafe and not block" contract. Here a native thread
// only copies the event into a node, links it into a lock-free multi-producer queue (one atomic
// exchange) and, when the JS side has asked to be woken, writes one byte to a pipe. JavaScript
// drains the queue on the event loop, in arrival order.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct lkq_node {
  _Atomic(struct lkq_node *) next;
  uint64_t enqueued_ns;
  size_t len;
  uint8_t data[];
} lkq_node;

// Vyukov's intrusive MPSC queue: producers exchange `head`, the single consumer walks `tail`.
static lkq_node stub;
static _Atomic(lkq_node *) head = &stub;
static lkq_node *tail = &stub;
static lkq_node *held; // popped but not yet copied out (did not fit the caller's buffer)

static int wake_read_fd = -1;
static int wake_write_fd = -1;
static atomic_int wake_armed = 1;

static atomic_uint_fast64_t stat_pushed;
static atomic_uint_fast64_t stat_popped;
static atomic_uint_fast64_t stat_alloc_failed;
static atomic_uint_fast64_t stat_callback_max_ns;
static atomic_uint_fast64_t stat_callback_total_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void push(lkq_node *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
  lkq_node *prev = atomic_exchange_explicit(&head, n, memory_order_acq_rel);
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

// Returns NULL when empty, or when a producer is between its exchange and its link; the
// producer then wakes the consumer itself if the consumer has armed the wake-up.
static lkq_node *pop(void) {
  lkq_node *t = tail;
  lkq_node *next = atomic_load_explicit(&t->next, memory_order_acquire);
  if (t == &stub) {
    if (next == NULL) return NULL;
    tail = next;
    t = next;
    next = atomic_load_explicit(&next->next, memory_order_acquire);
  }
  if (next != NULL) {
    tail = next;
    return t;
  }
  if (t != atomic_load_explicit(&head, memory_order_acquire)) return NULL;
  push(&stub);
  next = atomic_load_explicit(&t->next, memory_order_acquire);
  if (next != NULL) {
    tail = next;
    return t;
  }
  return NULL;
}

static void record_duration(uint64_t start) {
  uint64_t d = now_ns() - start;
  atomic_fetch_add_explicit(&stat_callback_total_ns, d, memory_order_relaxed);
  uint64_t seen = atomic_load_explicit(&stat_callback_max_ns, memory_order_relaxed);
  while (d > seen &&
         !atomic_compare_exchange_weak_explicit(&stat_callback_max_ns, &seen, d, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

// The FfiCallbackFn handed to livekit_ffi_initialize.
void lkq_callback(const uint8_t *data, size_t len) {
  uint64_t start = now_ns();
  lkq_node *n = malloc(sizeof(lkq_node) + len);
  if (n == NULL) {
    atomic_fetch_add_explicit(&stat_alloc_failed, 1, memory_order_relaxed);
    return;
  }
  n->enqueued_ns = start;
  n->len = len;
  memcpy(n->data, data, len);
  push(n);
  atomic_fetch_add_explicit(&stat_pushed, 1, memory_order_relaxed);
  if (atomic_exchange(&wake_armed, 0)) {
    uint8_t one = 1;
    // A full pipe (EAGAIN) already means a wake-up is pending, so the result is not needed.
    ssize_t ignored = write(wake_write_fd, &one, 1);
    (void)ignored;
  }
  record_duration(start);
}

void *lkq_callback_address(void) { return (void *)&lkq_callback; }

// Makes the calling thread (the consumer: the broker's JS thread) SCHED_BATCH. Linux does not let a
// woken SCHED_BATCH thread preempt the running one, so the wake-up written by a library thread in
// lkq_callback no longer hands that thread's CPU to the event loop while it is still inside the
// callback (measured on 2 cores: the longest callback fell from ~0.7 ms to ~0.1 ms). 0 or -errno.
int lkq_prefer_producers(void) {
  struct sched_param param = {0};
  return sched_setscheduler(0, SCHED_BATCH, &param) == 0 ? 0 : -errno;
}

// Creates the wake-up pipe once; returns its read end (non-blocking), or -errno.
int lkq_open(void) {
  if (wake_read_fd >= 0) return wake_read_fd;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
  wake_read_fd = fds[0];
  wake_write_fd = fds[1];
  return wake_read_fd;
}

// Copies queued events into `out` as records of [u32 len][u32 0][u64 enqueued_ns][len bytes],
// padded to 8 bytes. Returns the bytes written; when the next event alone does not fit,
// returns minus the record size it needs (the caller grows its buffer and calls again).
int64_t lkq_drain(uint8_t *out, size_t cap, uint32_t max_events, uint32_t *count) {
  size_t used = 0;
  uint32_t n = 0;
  while (n < max_events) {
    lkq_node *node = held != NULL ? held : pop();
    held = NULL;
    if (node == NULL) break;
    size_t record = (16 + node->len + 7) & ~(size_t)7;
    if (used + record > cap) {
      held = node;
      if (used == 0) {
        *count = 0;
        return -(int64_t)record;
      }
      break;
    }
    uint32_t len32 = (uint32_t)node->len, zero = 0;
    memcpy(out + used, &len32, 4);
    memcpy(out + used + 4, &zero, 4);
    memcpy(out + used + 8, &node->enqueued_ns, 8);
    memcpy(out + used + 16, node->data, node->len);
    used += record;
    n++;
    free(node);
  }
  atomic_fetch_add_explicit(&stat_popped, n, memory_order_relaxed);
  *count = n;
  return (int64_t)used;
}

// Asks producers to wake the consumer on their next push; the consumer drains once more
// afterwards, so an event pushed just before arming is not left waiting. The pipe's bytes are
// read by the event loop's own watcher.
void lkq_arm(void) { atomic_store(&wake_armed, 1); }

// [pushed, popped, alloc_failed, callback_max_ns, callback_total_ns, now_ns]
void lkq_stats(uint64_t out[6]) {
  out[0] = atomic_load(&stat_pushed);
  out[1] = atomic_load(&stat_popped);
  out[2] = atomic_load(&stat_alloc_failed);
  out[3] = atomic_load(&stat_callback_max_ns);
  out[4] = atomic_load(&stat_callback_total_ns);
  out[5] = now_ns();
}

// Native memory the broker lends to the library for the duration of a request.
uint64_t lkq_alloc_copy(const uint8_t *src, size_t len) {
  uint8_t *p = malloc(len > 0 ? len : 1);
  if (p == NULL) return 0;
  memcpy(p, src, len);
  return (uint64_t)(uintptr_t)p;
}

void lkq_free(uint64_t address) { free((void *)(uintptr_t)address); }

// Copies `len` bytes at `address` (memory the library owns) into `dst`.
void lkq_copy_out(uint8_t *dst, uint64_t address, size_t len) {
  memcpy(dst, (const void *)(uintptr_t)address, len);
}

"""Generated from proto/ffi_broker.proto by generate.py; do not edit."""

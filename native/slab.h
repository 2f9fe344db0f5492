// Page slabs: mmap'd, page-aligned memory outside the V8 heap, handed to JS
// as external ArrayBuffers. Each Node.js environment (the main thread, every
// Worker) keeps its own registry of the slabs it allocated, and only that
// environment's JS thread touches it: no lock, and a slab is found (for I/O)
// and released from the environment that allocated it only.
//
// A slab's states (every transition on its environment's JS thread):
//
//   live ──releaseSlab (no pins)──▶ released ──finalizer──▶ freed
//     │
//     ├──finalizer, no pins──▶ freed (unmapped)
//     └──finalizer, pinned───▶ orphaned ──last unpin──▶ freed (unmapped)
//
// live:     in the registry, mapped; I/O may find and pin it.
// released: unmapped and out of the registry at once (the memory may already
//           belong to a newer slab); the ArrayBuffer is detached, and its
//           finalizer only frees the bookkeeping.
// orphaned: the ArrayBuffer is gone (collected, or its environment is being
//           torn down) while the kernel or a worker thread still uses the
//           memory: out of the registry, still mapped, unmapped by the unpin
//           that ends the last request using it. This is what keeps I/O from
//           ever landing in memory the process has handed out again.
#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

namespace blockfork {

struct Slab;

// The live slabs of one environment, keyed by start address.
using SlabRegistry = std::map<uintptr_t, Slab*>;

// The live slab of this environment whose memory is exactly [data, data +
// byteLength) (an ArrayBuffer's whole backing store), or nullptr.
Slab* FindSlab(napi_env env, const void* data, size_t byteLength);
// Pins keep a slab mapped while a request uses it; each pin is one buffer of
// one I/O request, or one view of a checksum job (crc32c.cc). The unpin that ends an orphaned slab's last use unmaps it.
void PinSlab(Slab* slab);
void UnpinSlab(Slab* slab);
// True the first time a slab is seen by batch `batch` (a number from the
// environment's counter): the batch then takes one reference to its memory.
bool FirstInBatch(Slab* slab, uint64_t batch);

void InitSlab(Napi::Env env, Napi::Object exports);

}  // namespace blockfork

// Page slabs: mmap'd, page-aligned memory outside the V8 heap, handed to JS
// as external ArrayBuffers. A registry of live slabs lets the engines pin a
// slab while the kernel reads or writes it, so that an explicit release can
// refuse rather than free memory under a transfer in flight.
//
// Every function here runs on the JS thread only: pins are plain counters.
#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>

namespace blockfork {

struct Slab;

// The live slab holding [address, address + length), or nullptr when the
// memory is not (wholly) in one of our slabs.
Slab* FindSlab(const void* address, size_t length);
void PinSlab(Slab* slab);
void UnpinSlab(Slab* slab);

void InitSlab(Napi::Env env, Napi::Object exports);

}  // namespace blockfork

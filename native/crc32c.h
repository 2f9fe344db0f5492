// CRC32C of memory, at once (the JS thread) or on libuv's pool (crc32c.cc).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace blockfork {

// CRC32C of `length` bytes, continuing from `previous` (0 to start).
uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t previous);
// The same with the tables only, whatever the CPU has (for the tests).
uint32_t Crc32cSoftware(const uint8_t* data, size_t length, uint32_t previous);

void InitCrc32c(Napi::Env env, Napi::Object exports);

}  // namespace blockfork

// Opening a device or a regular file for block I/O, and its geometry.
#pragma once
#include <napi.h>

namespace blockfork {

void InitDevice(Napi::Env env, Napi::Object exports);

}  // namespace blockfork

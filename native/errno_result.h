// A failed system call travels to JS as { errno: -N, syscall }: the Error is
// built in one place, src/io/errors.ts, as Node's fs builds its own.
#pragma once
#include <napi.h>

namespace blockfork {

inline Napi::Object ErrnoResult(Napi::Env env, int err, const char* syscall) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("errno", Napi::Number::New(env, err > 0 ? -err : err));
  result.Set("syscall", Napi::String::New(env, syscall));
  return result;
}

}  // namespace blockfork

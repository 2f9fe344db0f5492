{
  "targets": [
    {
      "target_name": "blockfork",
      "sources": [
        "native/addon.cc",
        "native/slab.cc",
        "native/device.cc",
        "native/engine.cc",
        "native/uring_engine.cc",
        "native/thread_engine.cc",
        "native/crc32c.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-missing-field-initializers"]
    }
  ]
}

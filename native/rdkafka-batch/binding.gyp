# Builds ferry-rdkafka-batch against the librdkafka that @confluentinc/kafka-javascript built
# (its headers and shared object), so both use one copy of librdkafka in the process.
{
  "variables": {
    "ckjs": "<!(node -p \"require('node:path').dirname(require.resolve('@confluentinc/kafka-javascript/package.json'))\")"
  },
  "targets": [
    {
      "target_name": "ferry_rdkafka_batch",
      "sources": ["src/batch.c"],
      "include_dirs": ["<(ckjs)/deps/librdkafka/src"],
      "libraries": ["-L<(ckjs)/build/deps", "-lrdkafka", "-Wl,-rpath,<(ckjs)/build/deps"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }
  ]
}

{
  "targets": [
    {
      "target_name": "hostfile",
      "sources": ["hostfile.c"],
      "cflags": ["-O2", "-Wall"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}

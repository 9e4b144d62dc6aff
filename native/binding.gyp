{
  "variables": {
    "dcvg_march%": "native"
  },
  "targets": [
    {
      "target_name": "dcvg_native",
      "sources": [
        "src/addon.cc",
        "src/blas_conv.cc",
        "src/elementwise.cc",
        "src/attention.cc",
        "src/convert.cc",
        "src/metrics.cc"
      ],
      "include_dirs": ["src", "/usr/include/x86_64-linux-gnu/openblas-pthread"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-march=<(dcvg_march)", "-fexceptions", "-Wall", "-Wno-unused-parameter"],
      "cflags": ["-O3", "-fopenmp", "-march=<(dcvg_march)"],
      "libraries": ["-lopenblas", "-ldnnl", "-fopenmp"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}

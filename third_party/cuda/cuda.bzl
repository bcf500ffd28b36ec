"""cuda_library: .cu files compiled by the CUDA toolkit's nvcc into a cc_library.

Not a CUDA toolchain: one genrule per .cu file calls /usr/local/cuda/bin/nvcc (sm_90 SASS plus
compute_90 PTX); the objects and headers become an ordinary cc_library. Targets made here exist
only under --config=cuda: in the default build they are incompatible and `//...` skips them, so
a CPU-only build never runs nvcc.
"""

NVCC = "/usr/local/cuda/bin/nvcc"

# sm_90 machine code for H100/H200 plus compute_90 PTX that newer GPUs JIT-compile.
NVCC_FLAGS = [
    "-std=c++17",
    "-O3",
    "-gencode arch=compute_90,code=sm_90",
    "-gencode arch=compute_90,code=compute_90",
    "-Xcompiler -fPIC",
    "-Xcompiler -Wall",
    "-Xcompiler -Wno-sign-compare",
    "--expt-relaxed-constexpr",
    "-DSTAGEHAND_CUDA=1",
    "-I.",
    "-I$(GENDIR)",
    "-I/usr/local/cuda/include",
    "-ccbin /usr/bin/g++",
]

# The default build: CUDA targets are incompatible, so `build //...` skips them.
CUDA_ONLY = select({
    "//third_party/cuda:enabled": [],
    "//conditions:default": ["//third_party/cuda:requires_config_cuda"],
})

def cuda_library(name, srcs, hdrs = [], deps = [], cuda_hdrs = [], **kwargs):
    """A cc_library from .cu sources compiled by nvcc.

    Args:
      name: the cc_library's name.
      srcs: .cu files; each becomes one object file.
      hdrs: public headers of the library (also visible to nvcc).
      deps: cc_library dependencies (linked; their headers must be listed in cuda_hdrs for nvcc).
      cuda_hdrs: further headers the .cu files include (from other packages or private).
      **kwargs: passed to the cc_library (visibility, testonly, ...).
    """
    objects = []
    for src in srcs:
        stem = src[:-len(".cu")] if src.endswith(".cu") else src
        obj = "_objs_cuda/%s/%s.pic.o" % (name, stem)
        native.genrule(
            name = "%s_%s_nvcc" % (name, stem.replace("/", "_")),
            srcs = [src] + hdrs + cuda_hdrs,
            outs = [obj],
            cmd = "%s %s -c $(location %s) -o $@" % (NVCC, " ".join(NVCC_FLAGS), src),
            target_compatible_with = CUDA_ONLY,
            visibility = ["//visibility:private"],
            tags = ["gpu_build"],
        )
        objects.append(obj)
    native.cc_library(
        name = name,
        srcs = objects,
        hdrs = hdrs,
        deps = deps + ["//third_party/cuda:cudart"],
        target_compatible_with = CUDA_ONLY,
        alwayslink = True,
        **kwargs
    )

def cuda_test(name, srcs, deps = [], cuda_deps = [], tags = [], **kwargs):
    """A GPU test (tagged "gpu") that builds in every configuration.

    Under --config=cuda it is compiled with STAGEHAND_CUDA defined and linked with cuda_deps;
    otherwise it builds without them, and its sources (guarded by #ifdef STAGEHAND_CUDA) skip
    saying "built without --config=cuda". On a machine without a GPU the CUDA build's tests
    skip with the reason ProbeDevice gives.

    Args:
      name: the cc_test's name.
      srcs: test sources.
      deps: dependencies in every configuration (gtest, CPU reference ops).
      cuda_deps: dependencies only under --config=cuda (the CUDA ops, the test utilities).
      tags: more tags; "gpu" is always added.
      **kwargs: passed to cc_test.
    """
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + select({
            "//third_party/cuda:enabled": cuda_deps,
            "//conditions:default": [],
        }),
        local_defines = select({
            "//third_party/cuda:enabled": ["STAGEHAND_CUDA=1"],
            "//conditions:default": [],
        }),
        tags = tags + ["gpu"],
        **kwargs
    )

"""stagehand_fuzzer: one libFuzzer target and its corpus regression test.

Under --config=fuzz (clang, ASan + UBSan) the binary is a libFuzzer fuzzer; in the default
gcc build it links a replay main instead, so `bazel test //...` replays every corpus input.
Not a fuzzing engine: tools/fuzz/run_fuzzers.sh runs the fuzzers.
"""

def stagehand_fuzzer(name, srcs, deps = [], corpus = None, **kwargs):
    """A fuzz target `name` and `name_regression`, which runs it on every corpus file.

    Args:
      name: the fuzzer binary.
      srcs: its sources (defining LLVMFuzzerTestOneInput).
      deps: what it fuzzes.
      corpus: a folder of seed and regression inputs beside the BUILD file.
      **kwargs: passed to cc_binary.
    """
    corpus = corpus or (name + "_corpus")
    native.cc_binary(
        name = name,
        srcs = srcs,
        deps = deps + ["//tools/fuzz:fuzz_file"] + select({
            "//tools/fuzz:fuzzing": [],
            "//conditions:default": ["//tools/fuzz:replay_main"],
        }),
        linkopts = select({
            "//tools/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = ["fuzz_target"],
        **kwargs
    )
    files = native.glob([corpus + "/**"])
    native.sh_test(
        name = name + "_regression",
        size = "small",
        srcs = ["//tools/fuzz:replay.sh"],
        args = ["$(location :%s)" % name] + ["$(location %s)" % f for f in files],
        data = [":" + name] + files,
    )

"""planner(): one built-in planner, its registering library and its test.

A planner lives in <name>.cc / <name>.h and registers itself by name, so its library is
alwayslink; its test <name>_test.cc compares the unit-cost plan with tests/golden/<golden>.
"""

def planner(name, golden, deps = []):
    native.cc_library(
        name = name,
        srcs = [name + ".cc"],
        hdrs = [name + ".h"],
        alwayslink = 1,
        deps = [
            ":planner_spec",
            "//runtime:action",
            "//runtime:planner",
            "//runtime:step_spec",
            "//runtime/util:status_macros",
            "//third_party:absl",
        ] + deps,
    )
    native.cc_test(
        name = name + "_test",
        size = "small",
        srcs = [name + "_test.cc"],
        data = ["//tests/golden:" + golden],
        deps = [
            ":" + name,
            ":planner_test_util",
            "//runtime:dry_run",
            "//runtime:simulator",
            "//tests/golden:golden",
            "//third_party:absl",
            "//third_party:gtest_main",
        ],
        linkopts = ["-lgmock"],
    )

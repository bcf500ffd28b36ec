// Golden-file comparison for tests: the expected text lives in tests/golden/<name> (a data
// dependency of the test). Not a diff tool: a mismatch prints the actual text in full.
// To rewrite goldens after an intended change, run the test binary with
// STAGEHAND_UPDATE_GOLDEN=<checkout>/tests/golden, e.g.
//   STAGEHAND_UPDATE_GOLDEN=$PWD/tests/golden ./bazelw run //runtime/planners:zb_h1_test
#ifndef STAGEHAND_TESTS_GOLDEN_GOLDEN_H_
#define STAGEHAND_TESTS_GOLDEN_GOLDEN_H_

#include <string>

namespace stagehand::testing {

// The bytes of tests/golden/<name> from the test's runfiles ("" and a test failure if absent).
std::string ReadGolden(const std::string& name);

// EXPECTs that `actual` equals tests/golden/<name> byte for byte; with
// STAGEHAND_UPDATE_GOLDEN set, writes `actual` to that directory instead.
void ExpectMatchesGolden(const std::string& name, const std::string& actual);

}  // namespace stagehand::testing

#endif  // STAGEHAND_TESTS_GOLDEN_GOLDEN_H_

// StallDetector: decides, from the progress reports of a step's stages, that the step is
// stalled (every unfinished stage idle with nothing it may run and no tensor in flight),
// confirming with a second probe wave so that messages still on their way are not mistaken
// for a stall. Not an actor and not a timer: the step driver feeds it and sends its probes.
#ifndef STAGEHAND_RUNTIME_STALL_DETECTOR_H_
#define STAGEHAND_RUNTIME_STALL_DETECTOR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace stagehand::runtime {

// What a stage reports of its step.
struct StageProgress {
  int stage = 0;
  bool blocked = false;  // idle lane, work left, nothing it may start, no local hand-off
  bool done = false;     // all its compute of the step finished
  int64_t sent = 0;      // transfers it started this step
  int64_t received = 0;  // transfers that arrived there this step
  std::string waiting;   // what it waits for (probe replies only)
};

class StallDetector {
 public:
  explicit StallDetector(int num_stages) : num_stages_(num_stages) {}

  // A new step: forgets every report.
  void Reset(int64_t step);
  // An unsolicited report (a stage blocked or finished). Returns the number of a new probe
  // wave to send to every stage when all stages now look stalled, else nullopt.
  std::optional<int> OnReport(const StageProgress& progress);
  // A stage's answer to probe `wave`. Once every stage answered the current wave: the stall
  // report if they still look stalled and no counter moved since the wave was sent, else
  // nullopt (replies to older waves are ignored).
  std::optional<std::string> OnProbeReply(int wave, const StageProgress& progress);

 private:
  // Every stage reported, each done or blocked, at least one blocked, sends == receives.
  bool LooksStalled(const std::map<int, StageProgress>& reports) const;

  int num_stages_;
  int64_t step_ = 0;
  int wave_ = 0;                           // the current probe wave
  std::map<int, StageProgress> latest_;    // unsolicited, by stage
  std::map<int, StageProgress> snapshot_;  // latest_ when the wave was sent
  std::map<int, StageProgress> replies_;   // to the current wave
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_STALL_DETECTOR_H_

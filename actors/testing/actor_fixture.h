// ActorFixture: the base of the deterministic actor tests. CAF's test coordinator runs one
// message at a time and fires timeouts only when the test says; the fixture spawns
// Recorders (recorder.h) as the peers an actor under test sends to, and kills every actor
// it was given at the end. Include it from one file per test binary that defines
// CAF_TEST_NO_MAIN and includes caf/test/unit_test_impl.hpp first. Not a CAF test runner:
// checks are GoogleTest's.
#ifndef STAGEHAND_ACTORS_TESTING_ACTOR_FIXTURE_H_
#define STAGEHAND_ACTORS_TESTING_ACTOR_FIXTURE_H_

#include <memory>
#include <vector>

#include "actors/testing/recorder.h"
#include "caf/all.hpp"
#include "caf/test/dsl.hpp"
#include "gtest/gtest.h"
#include "runtime/step_spec.h"

namespace stagehand::actors::testing {

// An actor system configuration with `Register`'s message types (RegisterMessageTypes,
// RegisterClusterMessageTypes).
template <void (*Register)(caf::actor_system_config&)>
struct ConfigWith : caf::actor_system_config {
  ConfigWith() { Register(*this); }
};

// Two stages, one chunk each, two microbatches: chunk 1 (stage 1) holds the loss, and the
// embedding is tied between chunk 0 and chunk 1.
inline runtime::StepSpec TwoStages() {
  runtime::StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = 2;
  spec.num_chunks = 2;
  spec.chunk_to_stage = {0, 1};
  return spec;
}

template <class Config>
class ActorFixture : public ::testing::Test, public ::test_coordinator_fixture<Config> {
 protected:
  // The peers never quit on their own: the system does not wait for them at the end.
  ActorFixture() { this->sys.await_actors_before_shutdown(false); }
  // Actors that re-arm timers would keep the fixture's final run going: stopped here.
  void TearDown() override {
    for (const caf::actor& a : actors_) caf::anon_send_exit(a, caf::exit_reason::kill);
    this->sched.run();
  }
  // A Recorder, as the interface `Handle` the actor under test sends to.
  template <class Handle>
  Handle Record(std::shared_ptr<Received>& received) {
    received = std::make_shared<Received>();
    return caf::actor_cast<Handle>(Keep(this->sys.spawn(Recorder, received)));
  }
  // `handle`, killed at the end of the test.
  template <class Handle>
  Handle Keep(Handle handle) {
    actors_.push_back(caf::actor_cast<caf::actor>(handle));
    return handle;
  }
  // Every message, no timeouts.
  void Deliver() { this->sched.run(); }
  // The next message of type T the test's own scoped actor holds (an answer), if any.
  template <class T>
  std::optional<T> Answer() {
    std::optional<T> answer;
    this->self->receive([&](T& x) { answer = std::move(x); },
                        caf::after(std::chrono::seconds(0)) >> [] {});
    return answer;
  }

 private:
  std::vector<caf::actor> actors_;
};

}  // namespace stagehand::actors::testing

#endif  // STAGEHAND_ACTORS_TESTING_ACTOR_FIXTURE_H_

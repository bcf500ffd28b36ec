// Recorder: a test actor that keeps every message it receives, in order, so that a
// deterministic test (CAF's test coordinator) can check what an actor under test sent.
// Dynamically typed: cast its handle to the interface the actor under test sends to
// (caf::actor_cast<stage_reports>(recorder)). Not a fake of any actor: it never answers.
#ifndef STAGEHAND_ACTORS_TESTING_RECORDER_H_
#define STAGEHAND_ACTORS_TESTING_RECORDER_H_

#include <memory>
#include <optional>
#include <vector>

#include "caf/all.hpp"

namespace stagehand::actors::testing {

// What a recorder received, shared with the test.
struct Received {
  std::vector<caf::message> messages;

  // How many of the messages hold exactly (Ts...).
  template <class... Ts>
  int Count() const {
    int n = 0;
    for (const caf::message& m : messages) n += m.match_elements<Ts...>() ? 1 : 0;
    return n;
  }
  // The `index`-th message that holds exactly (Ts...) (0: the first), if there is one.
  template <class... Ts>
  std::optional<caf::message> Nth(int index = 0) const {
    for (const caf::message& m : messages) {
      if (m.match_elements<Ts...>() && index-- == 0) return m;
    }
    return std::nullopt;
  }
  // The first element of the `index`-th message that is a lone T, if there is one.
  template <class T>
  std::optional<T> Only(int index = 0) const {
    std::optional<caf::message> m = Nth<T>(index);
    if (!m) return std::nullopt;
    return m->get_as<T>(0);
  }
};

// Makes `self` keep every message its behaviour does not take in `received`.
inline void RecordTheRest(caf::scheduled_actor* self, std::shared_ptr<Received> received) {
  self->set_default_handler(
      [received](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
        received->messages.push_back(x.copy_content_to_message());
        return caf::message{};
      });
}

inline caf::behavior Recorder(caf::event_based_actor* self, std::shared_ptr<Received> received) {
  RecordTheRest(self, std::move(received));
  using never_atom = caf::atom_constant<caf::atom("never")>;
  return {[](never_atom) {}};  // every message goes to the default handler
}

}  // namespace stagehand::actors::testing

#endif  // STAGEHAND_ACTORS_TESTING_RECORDER_H_

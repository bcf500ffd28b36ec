// AuthenticatedStore: a Gloo rendezvous store whose entries are signed with the launch's
// secret (HMAC-SHA256 over the key and the value), so a group member connects only to the
// addresses other holders of the secret published; an entry written by anyone else (a forged
// address in a shared FileStore folder) is an error naming its key. Not encryption, and it
// does not authenticate Gloo's TCP pairs themselves: see README "Security".
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_AUTHENTICATED_STORE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_AUTHENTICATED_STORE_H_

#include <chrono>
#include <string>
#include <vector>

#include "gloo/rendezvous/store.h"

namespace stagehand::runtime {

class AuthenticatedStore : public gloo::rendezvous::Store {
 public:
  // `inner` must outlive this store; `secret` is the launch's join token (not empty).
  AuthenticatedStore(gloo::rendezvous::Store& inner, std::string secret);

  // Stores MAC(key, data) || data.
  void set(const std::string& key, const std::vector<char>& data) override;
  // The value set under `key`; throws gloo::Exception (which GlooCollective turns into a
  // status naming the group) when the entry is not signed with the secret.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { inner_.wait(keys); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    inner_.wait(keys, timeout);
  }

 private:
  std::vector<char> Mac(const std::string& key, const char* data, size_t size) const;

  gloo::rendezvous::Store& inner_;
  std::string secret_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_AUTHENTICATED_STORE_H_

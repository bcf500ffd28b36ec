// AuthenticatedStore: HMAC-SHA256 (OpenSSL) over a label, the key's length, the key and the
// value; compared in constant time.
#include "runtime/collectives/authenticated_store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"

namespace stagehand::runtime {
namespace {

constexpr size_t kMacBytes = 32;
constexpr char kLabel[] = "stagehand gloo store v1";

}  // namespace

AuthenticatedStore::AuthenticatedStore(gloo::rendezvous::Store& inner, std::string secret)
    : inner_(inner), secret_(std::move(secret)) {}

std::vector<char> AuthenticatedStore::Mac(const std::string& key, const char* data,
                                          size_t size) const {
  std::string message(kLabel, sizeof(kLabel));
  const uint64_t key_size = key.size();
  for (int i = 0; i < 8; ++i) message.push_back(static_cast<char>(key_size >> (8 * i)));
  message += key;
  message.append(data, size);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
  return std::vector<char>(mac, mac + kMacBytes);
}

void AuthenticatedStore::set(const std::string& key, const std::vector<char>& data) {
  std::vector<char> signed_value = Mac(key, data.data(), data.size());
  signed_value.insert(signed_value.end(), data.begin(), data.end());
  inner_.set(key, signed_value);
}

std::vector<char> AuthenticatedStore::get(const std::string& key) {
  // Gloo's HashStore::get does not block: an entry read before its writer set it would read
  // as empty (and be refused as unsigned), so wait for it as the blocking stores do.
  inner_.wait({key});
  std::vector<char> signed_value = inner_.get(key);
  if (signed_value.size() < kMacBytes) {
    throw ::gloo::Exception(absl::StrCat("rendezvous entry '", key, "' holds ", signed_value.size(),
                                         " bytes, no signature: not written by a member of this "
                                         "launch"));
  }
  const std::vector<char> expected =
      Mac(key, signed_value.data() + kMacBytes, signed_value.size() - kMacBytes);
  if (CRYPTO_memcmp(expected.data(), signed_value.data(), kMacBytes) != 0) {
    throw ::gloo::Exception(absl::StrCat("rendezvous entry '", key,
                                         "' is not signed with the launch's secret: written by a "
                                         "process without it (refused)"));
  }
  return std::vector<char>(signed_value.begin() + kMacBytes, signed_value.end());
}

}  // namespace stagehand::runtime

// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both sides, sans-IO.
//
// The pooler plays both roles:
//   * server, towards a connecting client (ScramServer): the client proves it knows the
//     password without sending it; we hold only the stored secret (pg_authid form) or a
//     plain-text password from the auth_file, turned into a secret once (ScramKeyCache).
//   * client, towards PostgreSQL (ScramClient): from a plain-text password, or, as PgBouncer
//     does when the auth_file holds only SCRAM secrets, from the ClientKey a client revealed
//     during its own SCRAM login plus the ServerKey of the secret ("pass-through").
//
// The exchange (payloads of SASLInitialResponse / AuthenticationSASLContinue /
// SASLResponse / AuthenticationSASLFinal; the wire framing is proto/messages.h's job):
//   client-first   n,,n=<user>,r=<client nonce>        (gs2 header "n,," or "y,,")
//   server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//   client-final   c=<base64 gs2 header>,r=<full nonce>,p=<base64 ClientProof>
//   server-final   v=<base64 ServerSignature>   or   e=<error>
// with
//   SaltedPassword  = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)
//   ClientKey       = HMAC(SaltedPassword, "Client Key")     StoredKey = SHA-256(ClientKey)
//   ServerKey       = HMAC(SaltedPassword, "Server Key")
//   AuthMessage     = client-first-bare + "," + server-first + "," + client-final-without-proof
//   ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//   ServerSignature = HMAC(ServerKey, AuthMessage)
//
// PostgreSQL specifics: the user name inside SCRAM is ignored (the startup packet's user
// counts; libpq sends "n="), authorization identities and mandatory extensions are refused,
// and a pure-ASCII password is used as is (see proto/saslprep.h for the rest).
//
// Nothing here logs. Error details (error_detail()) are fixed strings with no secret and no
// peer-supplied bytes, so they are safe to log.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rb::proto {

inline constexpr size_t kScramKeyLength = 32;  // SHA-256 output
// PostgreSQL's defaults for new secrets (scram_iterations, SCRAM_DEFAULT_SALT_LEN).
inline constexpr int kScramDefaultIterations = 4096;
inline constexpr size_t kScramDefaultSaltLength = 16;
// A server asking for more iterations than this is refused: one PBKDF2 of 4096 iterations
// costs milliseconds, so ten million would stall a worker for seconds per derivation.
inline constexpr int kScramMaxIterations = 10'000'000;
// Upper bound on any SCRAM message we accept. Real ones are under 200 bytes; the bound only
// caps the work and memory a hostile peer can cause.
inline constexpr size_t kScramMaxMessageLength = 4096;
inline constexpr absl::string_view kScramMechanism = "SCRAM-SHA-256";

using ScramKey = std::array<uint8_t, kScramKeyLength>;

class ScramKeyCache;

// A verifier as stored in pg_authid.rolpassword and in PgBouncer's auth_file:
//   SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
struct ScramSecret {
  int iterations = 0;
  std::string salt;  // raw bytes
  ScramKey stored_key{};
  ScramKey server_key{};
};

// Everything derived from (password, salt, iterations).
struct ScramKeys {
  ScramKey client_key{};
  ScramKey stored_key{};
  ScramKey server_key{};
};

// What a client-side login needs when it has no password: the ClientKey recovered from a
// client's SCRAM login, and the ServerKey, salt and iteration count of the secret it was
// checked against. PostgreSQL must hold the same secret, i.e. send the same salt and count.
struct ScramPassThroughKeys {
  ScramKey client_key{};
  ScramKey server_key{};
  std::string salt;  // raw bytes
  int iterations = 0;
};

// True if `stored` starts like a SCRAM secret (the check auth_file readers use to pick the
// method; the full parse is ParseScramSecret).
[[nodiscard]] bool LooksLikeScramSecret(absl::string_view stored);

// Parses the pg_authid form. Errors are InvalidArgument with a fixed text that never quotes
// the input (which may be a real secret).
[[nodiscard]] absl::StatusOr<ScramSecret> ParseScramSecret(absl::string_view text);
[[nodiscard]] std::string FormatScramSecret(const ScramSecret& secret);

// PBKDF2 + HMACs, uncached: milliseconds for 4096 iterations. SASLprep is applied to the
// password first. Returns false only if wolfCrypt fails or iterations < 1.
[[nodiscard]] bool DeriveScramKeys(absl::string_view password, absl::string_view salt,
                                   int iterations, ScramKeys* out);

// Server side, plain-text "password" authentication against a SCRAM secret: derives the
// keys for `password` with the secret's salt and count (through `cache` when non-null, so a
// repeated login pays PBKDF2 once) and compares StoredKey and ServerKey in constant time.
[[nodiscard]] bool VerifyScramPlainPassword(absl::string_view password, const ScramSecret& secret,
                                            ScramKeyCache* cache);

// A printable nonce of 18 random bytes in base64 (24 characters), as PostgreSQL makes them.
// Uses a per-thread wolfCrypt DRBG. Aborts if the system RNG can't be read (environment
// failure).
[[nodiscard]] std::string GenerateScramNonce();

// Thread-safe cache of derived keys, so that no secret pays PBKDF2 twice. Touched once per
// login, never per message, so one absl::Mutex is fine. Bounded: past `capacity` entries the
// oldest is dropped. Concurrent misses for the same key wait for the one derivation running.
//
// Entries are keyed by an HMAC (under a random per-cache key) of (password, salt,
// iterations), so the cache never stores a password or an unkeyed hash of one.
class ScramKeyCache {
 public:
  static constexpr size_t kDefaultCapacity = 4096;

  explicit ScramKeyCache(size_t capacity = kDefaultCapacity);
  ScramKeyCache(const ScramKeyCache&) = delete;
  ScramKeyCache& operator=(const ScramKeyCache&) = delete;
  ~ScramKeyCache();

  // Keys for (password, salt, iterations); PBKDF2 runs only on a miss. Returns false only
  // where DeriveScramKeys would.
  [[nodiscard]] bool Derive(absl::string_view password, absl::string_view salt, int iterations,
                            ScramKeys* out);

  // Server side, plain-text auth_file password: a secret that stays the same for this
  // (user, password) for the life of the cache, so a client verifying against it costs two
  // HMACs, and PBKDF2 runs once per user. The salt (16 bytes) is a keyed hash of
  // (user, password) under the cache's random key: unpredictable, stable without storage,
  // and different for two users who share a password. kScramDefaultIterations iterations.
  [[nodiscard]] bool SecretForPlainPassword(absl::string_view user, absl::string_view password,
                                            ScramSecret* out);

  // A secret for a user that does not exist, so that the exchange looks the same as for a
  // real one (PostgreSQL and PgBouncer do this to avoid revealing which users exist). Its
  // salt is stable per user name; no proof ever verifies against it. No PBKDF2.
  [[nodiscard]] ScramSecret MockSecret(absl::string_view user) const;

  // Number of PBKDF2 runs so far.
  [[nodiscard]] uint64_t DerivationsForTest() const;
  [[nodiscard]] size_t SizeForTest() const;

 private:
  struct Entry;
  using Digest = std::array<uint8_t, kScramKeyLength>;
  struct DigestHash {
    size_t operator()(const Digest& d) const;
  };

  Digest KeyDigest(absl::string_view tag, absl::string_view a, absl::string_view b,
                   int iterations) const;

  const size_t capacity_;
  Digest cache_key_{};  // random, set once in the constructor
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Digest, std::shared_ptr<Entry>, DigestHash> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<Digest> order_ ABSL_GUARDED_BY(mu_);  // insertion order, for eviction
  uint64_t derivations_ ABSL_GUARDED_BY(mu_) = 0;
};

// Result of one step of either state machine.
enum class [[nodiscard]] ScramResult : uint8_t {
  kOk,
  kBadMessage,         // malformed message or protocol violation (08P01 to a client)
  kUnsupported,        // well-formed but asks for what we don't offer: channel binding
                       // ("p="), an authorization identity, a mandatory extension
  kNonceMismatch,      // the nonce doesn't continue the one from the previous message
  kWrongPassword,      // server side: the proof does not verify (28P01)
  kServerError,        // client side: the server answered "e=..." (see server_error())
  kBadServerSignature, // client side: the server does not know the secret: abort the login
  kSecretMismatch,     // client side, pass-through: the server's salt or iteration count is
                       // not the one the keys were made with (auth_file and pg_authid differ)
  kOutOfOrder,         // step called in the wrong state (a bug in the caller)
  kInternalError,      // wolfCrypt failed, or the caller supplied an unusable nonce
};

[[nodiscard]] const char* ScramResultName(ScramResult result);

// Server side: verifies a connecting client.
//
//   ScramServer s(secret, GenerateScramNonce());
//   s.HandleClientFirst(sasl_initial_response_data, &server_first)   -> SASLContinue
//   s.HandleClientFinal(sasl_response_data, &server_final)           -> SASLFinal + AuthOk
//
// Any result other than kOk ends the exchange (state kFailed).
class ScramServer {
 public:
  enum class State : uint8_t { kWantClientFirst, kWantClientFinal, kDone, kFailed };

  // `server_nonce` must be non-empty printable ASCII without ','; GenerateScramNonce() makes
  // one. Fixed nonces are for tests only.
  ScramServer(const ScramSecret& secret, absl::string_view server_nonce);

  ScramResult HandleClientFirst(absl::string_view client_first, std::string* server_first);
  ScramResult HandleClientFinal(absl::string_view client_final, std::string* server_final);

  [[nodiscard]] State state() const { return state_; }
  // Why the last step failed; a fixed string, safe to log. Empty after success.
  [[nodiscard]] absl::string_view error_detail() const { return detail_; }

  // After HandleClientFinal returned kOk: the ClientKey the client proved it holds, and the
  // keys a ScramClient needs to log in to PostgreSQL on its behalf.
  [[nodiscard]] const ScramKey& client_key() const { return client_key_; }
  [[nodiscard]] ScramPassThroughKeys PassThroughKeys() const;

 private:
  ScramResult Fail(ScramResult result, absl::string_view detail);

  State state_ = State::kWantClientFirst;
  ScramSecret secret_;
  std::string server_nonce_;
  char cbind_flag_ = 0;             // 'n' or 'y', from the gs2 header
  std::string client_nonce_;
  std::string auth_message_;        // client-first-bare "," server-first ","
  ScramKey client_key_{};
  absl::string_view detail_;
};

// Client side: logs in to PostgreSQL.
//
//   ScramClient c = ScramClient::WithPassword(password, GenerateScramNonce(), &cache);
//   c.ClientFirst(&msg)                        -> SASLInitialResponse("SCRAM-SHA-256", msg)
//   c.HandleServerFirst(sasl_continue, &msg)   -> SASLResponse(msg)
//   c.HandleServerFinal(sasl_final)            -> kOk: wait for AuthenticationOk
class ScramClient {
 public:
  enum class State : uint8_t { kStart, kWantServerFirst, kWantServerFinal, kDone, kFailed };

  // From a plain-text password. `cache` may be null (then every login pays PBKDF2) and must
  // outlive the client. `client_nonce` as for ScramServer's server nonce. `sasl_user` goes
  // into "n=": PostgreSQL ignores it and libpq sends it empty.
  static ScramClient WithPassword(absl::string_view password, absl::string_view client_nonce,
                                  ScramKeyCache* cache, absl::string_view sasl_user = {});
  // Pass-through: no password, the keys recovered from a client's SCRAM login.
  static ScramClient WithKeys(const ScramPassThroughKeys& keys, absl::string_view client_nonce,
                              absl::string_view sasl_user = {});

  ScramResult ClientFirst(std::string* client_first);
  ScramResult HandleServerFirst(absl::string_view server_first, std::string* client_final);
  ScramResult HandleServerFinal(absl::string_view server_final);

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] absl::string_view error_detail() const { return detail_; }
  // After kServerError: the server's error token ("invalid-proof", ...), restricted to
  // printable ASCII and 64 bytes; it carries no secret.
  [[nodiscard]] absl::string_view server_error() const { return server_error_; }

 private:
  ScramClient() = default;
  ScramResult Fail(ScramResult result, absl::string_view detail);

  State state_ = State::kStart;
  bool pass_through_ = false;
  std::string password_;            // only without pass-through
  ScramKeyCache* cache_ = nullptr;
  ScramPassThroughKeys keys_;       // pass-through: given; otherwise filled once derived
  std::string client_nonce_;
  std::string sasl_user_;
  std::string auth_message_;        // grows over the exchange
  ScramKey expected_server_signature_{};
  std::string server_error_;
  absl::string_view detail_;
};

}  // namespace rb::proto

#include "proto/scram.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>
// clang-format on

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/auth_util.h"
#include "proto/saslprep.h"

namespace rb::proto {
namespace {

constexpr absl::string_view kSecretPrefix = "SCRAM-SHA-256$";
// base64("n,,") and base64("y,,"): the c= attribute of a client-final-message without
// channel binding must carry the gs2 header of the client-first-message, byte for byte.
constexpr absl::string_view kCbindN = "biws";
constexpr absl::string_view kCbindY = "eSws";
constexpr size_t kNonceRawBytes = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr size_t kServerErrorMaxLength = 64;

absl::string_view AsView(const ScramKey& key) {
  return absl::string_view(reinterpret_cast<const char*>(key.data()), key.size());
}

absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

void Wipe(void* p, size_t n) {
  volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
  while (n--) *v++ = 0;
}

// HMAC-SHA-256(key, concatenation of parts).
bool HmacSha256(absl::string_view key, std::initializer_list<absl::string_view> parts,
                ScramKey* out) {
  Hmac hmac;
  if (wc_HmacInit(&hmac, nullptr, INVALID_DEVID) != 0) return false;
  int rc = wc_HmacSetKey(&hmac, WC_SHA256, reinterpret_cast<const byte*>(key.data()),
                         static_cast<word32>(key.size()));
  for (absl::string_view part : parts) {
    if (rc != 0) break;
    rc = wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(part.data()),
                       static_cast<word32>(part.size()));
  }
  if (rc == 0) rc = wc_HmacFinal(&hmac, out->data());
  wc_HmacFree(&hmac);
  return rc == 0;
}

bool Sha256(const ScramKey& in, ScramKey* out) {
  return wc_Sha256Hash(in.data(), static_cast<word32>(in.size()), out->data()) == 0;
}

void Xor(const ScramKey& a, const ScramKey& b, ScramKey* out) {
  for (size_t i = 0; i < a.size(); ++i) (*out)[i] = a[i] ^ b[i];
}

// RFC 5802: printable = %x21-2B / %x2D-7E (printable ASCII except ','). Nonces are made of it.
bool IsPrintableNonce(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  }
  return true;
}

// Strict decimal: digits only (no sign, no spaces), 1..max.
bool ParseCount(absl::string_view s, int max, int* out) {
  if (s.empty() || s.size() > 10) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > max) return false;
  *out = static_cast<int>(v);
  return true;
}

// Walks "attr=value,attr=value" messages. A value runs to the next ',' or the end; the
// commas between attributes are consumed explicitly, so "r=x," (a trailing comma) is caught.
class Cursor {
 public:
  explicit Cursor(absl::string_view s) : all_(s) {}

  // "<attr>=<value>" at the current position.
  bool Attr(char attr, absl::string_view* value) {
    const absl::string_view rest = all_.substr(pos_);
    if (rest.size() < 2 || rest[0] != attr || rest[1] != '=') return false;
    return TakeValue(value);
  }
  // Any attribute (RFC 5802: attr-val = ALPHA "=" value), for extensions we skip.
  bool AnyAttr(char* attr, absl::string_view* value) {
    const absl::string_view rest = all_.substr(pos_);
    if (rest.size() < 2 || rest[1] != '=') return false;
    const char a = rest[0];
    if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z'))) return false;
    *attr = a;
    return TakeValue(value);
  }
  bool Comma() {
    if (pos_ < all_.size() && all_[pos_] == ',') {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() const { return pos_ == all_.size(); }
  size_t pos() const { return pos_; }

 private:
  bool TakeValue(absl::string_view* value) {
    size_t end = all_.find(',', pos_ + 2);
    if (end == absl::string_view::npos) end = all_.size();
    *value = all_.substr(pos_ + 2, end - pos_ - 2);
    pos_ = end;
    return true;
  }

  absl::string_view all_;
  size_t pos_ = 0;
};

// Checks shared by every incoming message. PostgreSQL treats SCRAM messages as C strings
// and rejects one whose length disagrees with strlen(), i.e. one with a NUL inside.
bool Acceptable(absl::string_view msg) {
  return !msg.empty() && msg.size() <= kScramMaxMessageLength &&
         msg.find('\0') == absl::string_view::npos;
}

// "n=" carries a saslname: ',' and '=' are escaped as "=2C" and "=3D".
std::string EscapeSaslName(absl::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Per-thread wolfCrypt DRBG, seeded from the OS.
struct ThreadRng {
  WC_RNG rng;
  bool ok;
  ThreadRng() { ok = wc_InitRng(&rng) == 0; }
  ~ThreadRng() {
    if (ok) wc_FreeRng(&rng);
  }
};

void RandomBytes(uint8_t* out, size_t n) {
  thread_local ThreadRng rng;
  if (!rng.ok || wc_RNG_GenerateBlock(&rng.rng, out, static_cast<word32>(n)) != 0) {
    // Environment failure (no usable /dev/urandom): fatal and loud, never a weak nonce.
    std::fputs("ringbouncer: fatal: random number generator failed\n", stderr);
    std::abort();
  }
}

void AppendU32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Secrets.

bool LooksLikeScramSecret(absl::string_view stored) {
  return absl::StartsWith(stored, kSecretPrefix);
}

absl::StatusOr<ScramSecret> ParseScramSecret(absl::string_view text) {
  // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>. No field can hold '$' or ':'
  // (digits and base64 only), so plain splitting is exact.
  if (!absl::StartsWith(text, kSecretPrefix)) {
    return absl::InvalidArgumentError("SCRAM secret: does not start with SCRAM-SHA-256$");
  }
  absl::string_view rest = text.substr(kSecretPrefix.size());
  const size_t dollar = rest.find('$');
  if (dollar == absl::string_view::npos) {
    return absl::InvalidArgumentError("SCRAM secret: missing '$' before the keys");
  }
  const absl::string_view params = rest.substr(0, dollar);
  const absl::string_view keys = rest.substr(dollar + 1);
  const size_t colon1 = params.find(':');
  const size_t colon2 = keys.find(':');
  if (colon1 == absl::string_view::npos || colon2 == absl::string_view::npos) {
    return absl::InvalidArgumentError("SCRAM secret: missing ':' separator");
  }
  ScramSecret secret;
  if (!ParseCount(params.substr(0, colon1), INT_MAX, &secret.iterations)) {
    return absl::InvalidArgumentError("SCRAM secret: bad iteration count");
  }
  if (!Base64Decode(params.substr(colon1 + 1), &secret.salt) || secret.salt.empty()) {
    return absl::InvalidArgumentError("SCRAM secret: bad salt (not base64 or empty)");
  }
  std::string stored, server;
  if (!Base64Decode(keys.substr(0, colon2), &stored) || stored.size() != kScramKeyLength) {
    return absl::InvalidArgumentError("SCRAM secret: bad StoredKey (not 32 bytes of base64)");
  }
  if (!Base64Decode(keys.substr(colon2 + 1), &server) || server.size() != kScramKeyLength) {
    return absl::InvalidArgumentError("SCRAM secret: bad ServerKey (not 32 bytes of base64)");
  }
  std::memcpy(secret.stored_key.data(), stored.data(), kScramKeyLength);
  std::memcpy(secret.server_key.data(), server.data(), kScramKeyLength);
  return secret;
}

std::string FormatScramSecret(const ScramSecret& secret) {
  return absl::StrCat(kSecretPrefix, secret.iterations, ":", Base64Encode(secret.salt), "$",
                      Base64Encode(secret.stored_key), ":", Base64Encode(secret.server_key));
}

bool DeriveScramKeys(absl::string_view password, absl::string_view salt, int iterations,
                     ScramKeys* out) {
  if (iterations < 1) return false;
  std::string prepared;
  // Whatever the outcome, `prepared` holds the bytes PostgreSQL's rules say to use (or, for
  // kUnsupported, the raw bytes: see saslprep.h).
  (void)SaslPrep(password, &prepared);
  // A byte pointer that is never null, even for an empty password or salt.
  static const byte kEmpty = 0;
  const byte* pw = prepared.empty() ? &kEmpty : reinterpret_cast<const byte*>(prepared.data());
  const byte* sa = salt.empty() ? &kEmpty : reinterpret_cast<const byte*>(salt.data());
  ScramKey salted{};
  bool ok = wc_PBKDF2(salted.data(), pw, static_cast<int>(prepared.size()), sa,
                      static_cast<int>(salt.size()), iterations, kScramKeyLength,
                      WC_SHA256) == 0;
  ok = ok && HmacSha256(AsView(salted), {"Client Key"}, &out->client_key) &&
       Sha256(out->client_key, &out->stored_key) &&
       HmacSha256(AsView(salted), {"Server Key"}, &out->server_key);
  Wipe(salted.data(), salted.size());
  Wipe(prepared.data(), prepared.size());
  return ok;
}

std::string GenerateScramNonce() {
  uint8_t raw[kNonceRawBytes];
  RandomBytes(raw, sizeof(raw));
  return Base64Encode(absl::Span<const uint8_t>(raw, sizeof(raw)));
}

// ---------------------------------------------------------------------------------------------
// Key cache.

struct ScramKeyCache::Entry {
  bool ready = false;  // guarded by the cache's mu_
  bool ok = false;
  ScramKeys keys;
};

size_t ScramKeyCache::DigestHash::operator()(const Digest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof(h));  // the digest is already uniformly random
  return h;
}

ScramKeyCache::ScramKeyCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
  RandomBytes(cache_key_.data(), cache_key_.size());
}

ScramKeyCache::~ScramKeyCache() { Wipe(cache_key_.data(), cache_key_.size()); }

ScramKeyCache::Digest ScramKeyCache::KeyDigest(absl::string_view tag, absl::string_view a,
                                               absl::string_view b, int iterations) const {
  // Length-prefixed fields, so ("ab","c") and ("a","bc") differ.
  std::string header;
  AppendU32(static_cast<uint32_t>(a.size()), &header);
  std::string middle;
  AppendU32(static_cast<uint32_t>(b.size()), &middle);
  std::string tail;
  AppendU32(static_cast<uint32_t>(iterations), &tail);
  Digest d{};
  if (!HmacSha256(AsView(cache_key_), {tag, header, a, middle, b, tail}, &d)) {
    // Can't happen with a working wolfCrypt; an all-zero digest would merge entries, so
    // fall back to no caching for this call by returning a fresh random digest.
    RandomBytes(d.data(), d.size());
  }
  return d;
}

bool ScramKeyCache::Derive(absl::string_view password, absl::string_view salt, int iterations,
                           ScramKeys* out) {
  if (iterations < 1) return false;
  const Digest digest = KeyDigest("derive", password, salt, iterations);
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(digest);
    if (it != entries_.end()) {
      entry = it->second;
      // Another thread may be running the PBKDF2 for this key: wait for it rather than
      // paying it twice.
      mu_.Await(absl::Condition(&entry->ready));
      if (!entry->ok) return false;
      *out = entry->keys;
      return true;
    }
    entry = std::make_shared<Entry>();
    entries_.emplace(digest, entry);
    order_.push_back(digest);
    while (order_.size() > capacity_) {
      entries_.erase(order_.front());  // a waiter keeps its Entry alive via shared_ptr
      order_.pop_front();
    }
    ++derivations_;
  }
  ScramKeys keys;
  const bool ok = DeriveScramKeys(password, salt, iterations, &keys);
  absl::MutexLock lock(&mu_);
  entry->keys = keys;
  entry->ok = ok;
  entry->ready = true;
  if (!ok) {
    auto it = entries_.find(digest);
    if (it != entries_.end() && it->second == entry) entries_.erase(it);
    return false;
  }
  *out = keys;
  return true;
}

bool ScramKeyCache::SecretForPlainPassword(absl::string_view user, absl::string_view password,
                                           ScramSecret* out) {
  const Digest salt = KeyDigest("plain-salt", user, password, 0);
  ScramSecret secret;
  secret.iterations = kScramDefaultIterations;
  secret.salt.assign(reinterpret_cast<const char*>(salt.data()), kScramDefaultSaltLength);
  ScramKeys keys;
  if (!Derive(password, secret.salt, secret.iterations, &keys)) return false;
  secret.stored_key = keys.stored_key;
  secret.server_key = keys.server_key;
  *out = std::move(secret);
  return true;
}

ScramSecret ScramKeyCache::MockSecret(absl::string_view user) const {
  ScramSecret secret;
  secret.iterations = kScramDefaultIterations;
  const Digest salt = KeyDigest("mock-salt", user, {}, 0);
  secret.salt.assign(reinterpret_cast<const char*>(salt.data()), kScramDefaultSaltLength);
  secret.stored_key = KeyDigest("mock-stored", user, {}, 0);
  secret.server_key = KeyDigest("mock-server", user, {}, 0);
  return secret;
}

uint64_t ScramKeyCache::DerivationsForTest() const {
  absl::MutexLock lock(&mu_);
  return derivations_;
}

size_t ScramKeyCache::SizeForTest() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

bool VerifyScramPlainPassword(absl::string_view password, const ScramSecret& secret,
                              ScramKeyCache* cache) {
  ScramKeys keys;
  const bool derived = cache != nullptr
                           ? cache->Derive(password, secret.salt, secret.iterations, &keys)
                           : DeriveScramKeys(password, secret.salt, secret.iterations, &keys);
  // Both keys, so a secret whose ServerKey doesn't belong to its StoredKey never matches.
  const bool stored_ok = ConstantTimeEquals(keys.stored_key, secret.stored_key);
  const bool server_ok = ConstantTimeEquals(keys.server_key, secret.server_key);
  return derived && stored_ok && server_ok;
}

// ---------------------------------------------------------------------------------------------
// Results.

const char* ScramResultName(ScramResult result) {
  switch (result) {
    case ScramResult::kOk:
      return "ok";
    case ScramResult::kBadMessage:
      return "malformed SCRAM message";
    case ScramResult::kUnsupported:
      return "unsupported SCRAM feature";
    case ScramResult::kNonceMismatch:
      return "SCRAM nonce mismatch";
    case ScramResult::kWrongPassword:
      return "wrong password";
    case ScramResult::kServerError:
      return "server reported a SCRAM error";
    case ScramResult::kBadServerSignature:
      return "incorrect server signature";
    case ScramResult::kSecretMismatch:
      return "server's salt or iteration count differs from the stored SCRAM secret";
    case ScramResult::kOutOfOrder:
      return "SCRAM step out of order";
    case ScramResult::kInternalError:
      return "internal SCRAM error";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Server side.

ScramServer::ScramServer(const ScramSecret& secret, absl::string_view server_nonce)
    : secret_(secret), server_nonce_(server_nonce) {}

ScramResult ScramServer::Fail(ScramResult result, absl::string_view detail) {
  state_ = State::kFailed;
  detail_ = detail;
  return result;
}

ScramResult ScramServer::HandleClientFirst(absl::string_view msg, std::string* server_first) {
  if (state_ != State::kWantClientFirst) {
    return Fail(ScramResult::kOutOfOrder, "client-first-message in the wrong state");
  }
  if (!IsPrintableNonce(server_nonce_) || secret_.iterations < 1 || secret_.salt.empty()) {
    return Fail(ScramResult::kInternalError, "unusable server nonce or secret");
  }
  if (!Acceptable(msg)) return Fail(ScramResult::kBadMessage, "empty, oversized or NUL inside");

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  switch (msg[0]) {
    case 'n':  // the client does not support channel binding
    case 'y':  // the client supports it but thinks we don't: true, we offer no -PLUS mechanism
      break;
    case 'p':  // the client requires channel binding (SCRAM-SHA-256-PLUS): not offered
      return Fail(ScramResult::kUnsupported, "client requires channel binding");
    default:
      return Fail(ScramResult::kBadMessage, "unexpected channel-binding flag");
  }
  if (msg.size() < 2 || msg[1] != ',') {
    return Fail(ScramResult::kBadMessage, "comma expected after the channel-binding flag");
  }
  if (absl::StartsWith(msg.substr(2), "a=")) {
    // PostgreSQL: authorization identities are not supported (the startup user counts).
    return Fail(ScramResult::kUnsupported, "client uses an authorization identity");
  }
  if (msg.size() < 3 || msg[2] != ',') {
    return Fail(ScramResult::kBadMessage, "comma expected after the gs2 header");
  }
  cbind_flag_ = msg[0];
  const absl::string_view bare = msg.substr(3);

  if (absl::StartsWith(bare, "m=")) {
    return Fail(ScramResult::kUnsupported, "client requires an unsupported SCRAM extension");
  }
  Cursor cur(bare);
  absl::string_view user, nonce;
  // The user name is read and ignored: PostgreSQL takes the user from the startup packet,
  // and libpq sends an empty one.
  if (!cur.Attr('n', &user) || !cur.Comma()) {
    return Fail(ScramResult::kBadMessage, "user name attribute expected");
  }
  if (!cur.Attr('r', &nonce)) return Fail(ScramResult::kBadMessage, "nonce attribute expected");
  if (!IsPrintableNonce(nonce)) {
    return Fail(ScramResult::kBadMessage, "empty nonce or non-printable characters in it");
  }
  // Optional extensions follow; none is supported, so they are skipped (as PostgreSQL does).
  while (!cur.AtEnd()) {
    char attr;
    absl::string_view value;
    if (!cur.Comma() || !cur.AnyAttr(&attr, &value)) {
      return Fail(ScramResult::kBadMessage, "malformed attribute after the nonce");
    }
  }

  client_nonce_.assign(nonce.data(), nonce.size());
  *server_first = absl::StrCat("r=", client_nonce_, server_nonce_, ",s=",
                               Base64Encode(secret_.salt), ",i=", secret_.iterations);
  auth_message_ = absl::StrCat(bare, ",", *server_first, ",");
  state_ = State::kWantClientFinal;
  detail_ = {};
  return ScramResult::kOk;
}

ScramResult ScramServer::HandleClientFinal(absl::string_view msg, std::string* server_final) {
  if (state_ != State::kWantClientFinal) {
    return Fail(ScramResult::kOutOfOrder, "client-final-message in the wrong state");
  }
  if (!Acceptable(msg)) return Fail(ScramResult::kBadMessage, "empty, oversized or NUL inside");

  Cursor cur(msg);
  absl::string_view cbind, nonce;
  if (!cur.Attr('c', &cbind) || !cur.Comma()) {
    return Fail(ScramResult::kBadMessage, "channel-binding attribute expected");
  }
  // Without channel binding, c= is base64 of the gs2 header the client sent first. A flag
  // that changed between the messages would be a downgrade attempt.
  if (cbind != (cbind_flag_ == 'y' ? kCbindY : kCbindN)) {
    return Fail(ScramResult::kBadMessage, "channel-binding data does not match the gs2 header");
  }
  if (!cur.Attr('r', &nonce)) return Fail(ScramResult::kBadMessage, "nonce attribute expected");
  if (nonce.size() != client_nonce_.size() + server_nonce_.size() ||
      !absl::StartsWith(nonce, client_nonce_) || !absl::EndsWith(nonce, server_nonce_)) {
    return Fail(ScramResult::kNonceMismatch, "nonce does not match");
  }
  // Extensions may sit between the nonce and the proof; the proof is last.
  size_t without_proof_end = 0;
  absl::string_view proof_b64;
  for (;;) {
    without_proof_end = cur.pos();
    char attr;
    absl::string_view value;
    if (!cur.Comma() || !cur.AnyAttr(&attr, &value)) {
      return Fail(ScramResult::kBadMessage, "proof attribute expected");
    }
    if (attr == 'p') {
      proof_b64 = value;
      break;
    }
  }
  if (!cur.AtEnd()) return Fail(ScramResult::kBadMessage, "garbage after the proof");
  std::string proof;
  if (!Base64Decode(proof_b64, &proof) || proof.size() != kScramKeyLength) {
    return Fail(ScramResult::kBadMessage, "malformed proof");
  }

  auth_message_.append(msg.data(), without_proof_end);
  ScramKey client_signature, recovered_stored_key, server_signature;
  if (!HmacSha256(AsView(secret_.stored_key), {auth_message_}, &client_signature)) {
    return Fail(ScramResult::kInternalError, "HMAC failed");
  }
  for (size_t i = 0; i < kScramKeyLength; ++i) {
    client_key_[i] = static_cast<uint8_t>(proof[i]) ^ client_signature[i];
  }
  if (!Sha256(client_key_, &recovered_stored_key)) {
    return Fail(ScramResult::kInternalError, "SHA-256 failed");
  }
  if (!ConstantTimeEquals(recovered_stored_key, secret_.stored_key)) {
    client_key_.fill(0);
    return Fail(ScramResult::kWrongPassword, "proof does not verify");
  }
  if (!HmacSha256(AsView(secret_.server_key), {auth_message_}, &server_signature)) {
    return Fail(ScramResult::kInternalError, "HMAC failed");
  }
  *server_final = absl::StrCat("v=", Base64Encode(server_signature));
  state_ = State::kDone;
  detail_ = {};
  return ScramResult::kOk;
}

ScramPassThroughKeys ScramServer::PassThroughKeys() const {
  ScramPassThroughKeys keys;
  keys.client_key = client_key_;
  keys.server_key = secret_.server_key;
  keys.salt = secret_.salt;
  keys.iterations = secret_.iterations;
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Client side.

ScramClient ScramClient::WithPassword(absl::string_view password, absl::string_view client_nonce,
                                      ScramKeyCache* cache, absl::string_view sasl_user) {
  ScramClient c;
  c.password_.assign(password.data(), password.size());
  c.cache_ = cache;
  c.client_nonce_.assign(client_nonce.data(), client_nonce.size());
  c.sasl_user_.assign(sasl_user.data(), sasl_user.size());
  return c;
}

ScramClient ScramClient::WithKeys(const ScramPassThroughKeys& keys,
                                  absl::string_view client_nonce, absl::string_view sasl_user) {
  ScramClient c;
  c.pass_through_ = true;
  c.keys_ = keys;
  c.client_nonce_.assign(client_nonce.data(), client_nonce.size());
  c.sasl_user_.assign(sasl_user.data(), sasl_user.size());
  return c;
}

ScramResult ScramClient::Fail(ScramResult result, absl::string_view detail) {
  state_ = State::kFailed;
  detail_ = detail;
  return result;
}

ScramResult ScramClient::ClientFirst(std::string* client_first) {
  if (state_ != State::kStart) {
    return Fail(ScramResult::kOutOfOrder, "client-first-message already sent");
  }
  if (!IsPrintableNonce(client_nonce_)) {
    return Fail(ScramResult::kInternalError, "unusable client nonce");
  }
  // "n,,": no channel binding, and we don't think the server supports it either (we never
  // pick SCRAM-SHA-256-PLUS), so 'n' rather than 'y'.
  *client_first = absl::StrCat("n,,n=", EscapeSaslName(sasl_user_), ",r=", client_nonce_);
  auth_message_ = absl::StrCat(absl::string_view(*client_first).substr(3), ",");
  state_ = State::kWantServerFirst;
  return ScramResult::kOk;
}

ScramResult ScramClient::HandleServerFirst(absl::string_view msg, std::string* client_final) {
  if (state_ != State::kWantServerFirst) {
    return Fail(ScramResult::kOutOfOrder, "server-first-message in the wrong state");
  }
  if (!Acceptable(msg)) return Fail(ScramResult::kBadMessage, "empty, oversized or NUL inside");

  Cursor cur(msg);
  absl::string_view nonce, salt_b64, iter_text;
  if (!cur.Attr('r', &nonce)) return Fail(ScramResult::kBadMessage, "nonce attribute expected");
  // The server's nonce must extend ours: otherwise this is a replay or a confused server.
  if (nonce.size() <= client_nonce_.size() || !absl::StartsWith(nonce, client_nonce_)) {
    return Fail(ScramResult::kNonceMismatch, "server nonce does not extend the client nonce");
  }
  if (!IsPrintableNonce(nonce)) {
    return Fail(ScramResult::kBadMessage, "non-printable characters in the server nonce");
  }
  if (!cur.Comma() || !cur.Attr('s', &salt_b64)) {
    return Fail(ScramResult::kBadMessage, "salt attribute expected");
  }
  std::string salt;
  if (!Base64Decode(salt_b64, &salt) || salt.empty()) {
    return Fail(ScramResult::kBadMessage, "invalid salt");
  }
  if (!cur.Comma() || !cur.Attr('i', &iter_text)) {
    return Fail(ScramResult::kBadMessage, "iteration count attribute expected");
  }
  int iterations = 0;
  if (!ParseCount(iter_text, kScramMaxIterations, &iterations)) {
    return Fail(ScramResult::kBadMessage, "invalid iteration count (below 1 or absurdly high)");
  }
  // libpq refuses anything after i=, and so do we.
  if (!cur.AtEnd()) return Fail(ScramResult::kBadMessage, "garbage after the iteration count");

  if (pass_through_) {
    // The ClientKey came from a client's login against our copy of the secret; it only
    // works if PostgreSQL holds the same secret, which the salt and count reveal.
    if (salt != keys_.salt || iterations != keys_.iterations) {
      return Fail(ScramResult::kSecretMismatch, "server salt or iteration count differs");
    }
  } else {
    ScramKeys derived;
    const bool ok = cache_ != nullptr ? cache_->Derive(password_, salt, iterations, &derived)
                                      : DeriveScramKeys(password_, salt, iterations, &derived);
    if (!ok) return Fail(ScramResult::kInternalError, "key derivation failed");
    keys_.client_key = derived.client_key;
    keys_.server_key = derived.server_key;
    keys_.salt = std::move(salt);
    keys_.iterations = iterations;
  }

  const std::string without_proof = absl::StrCat("c=", kCbindN, ",r=", nonce);
  absl::StrAppend(&auth_message_, msg, ",", without_proof);
  ScramKey stored_key, client_signature, proof;
  if (!Sha256(keys_.client_key, &stored_key) ||
      !HmacSha256(AsView(stored_key), {auth_message_}, &client_signature) ||
      !HmacSha256(AsView(keys_.server_key), {auth_message_}, &expected_server_signature_)) {
    return Fail(ScramResult::kInternalError, "HMAC failed");
  }
  Xor(keys_.client_key, client_signature, &proof);
  *client_final = absl::StrCat(without_proof, ",p=", Base64Encode(proof));
  state_ = State::kWantServerFinal;
  return ScramResult::kOk;
}

ScramResult ScramClient::HandleServerFinal(absl::string_view msg) {
  if (state_ != State::kWantServerFinal) {
    return Fail(ScramResult::kOutOfOrder, "server-final-message in the wrong state");
  }
  if (!Acceptable(msg)) return Fail(ScramResult::kBadMessage, "empty, oversized or NUL inside");
  Cursor cur(msg);
  absl::string_view value;
  if (cur.Attr('e', &value)) {
    // server-error = "e=" server-error-value; keep a log-safe copy.
    server_error_.clear();
    for (char c : value.substr(0, kServerErrorMaxLength)) {
      server_error_.push_back(c >= 0x20 && c <= 0x7E ? c : '?');
    }
    return Fail(ScramResult::kServerError, "server reported an error");
  }
  if (!cur.Attr('v', &value)) return Fail(ScramResult::kBadMessage, "verifier attribute expected");
  if (!cur.AtEnd()) return Fail(ScramResult::kBadMessage, "garbage after the verifier");
  std::string signature;
  if (!Base64Decode(value, &signature) || signature.size() != kScramKeyLength) {
    return Fail(ScramResult::kBadMessage, "malformed server signature");
  }
  if (!ConstantTimeEquals(AsBytes(signature), expected_server_signature_)) {
    return Fail(ScramResult::kBadServerSignature, "server signature does not match");
  }
  state_ = State::kDone;
  return ScramResult::kOk;
}

}  // namespace rb::proto

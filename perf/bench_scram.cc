// Server-side SCRAM-SHA-256 logins per second: client-first -> server-first -> client-final ->
// verify -> server-final, as the pooler runs them for each connecting client.
//
//   uncached      a plain-text password with a fresh salt every login: PBKDF2 (4096
//                 iterations) runs each time. This is what a pooler without a key cache
//                 would pay, and why PLATFORM_NOTES says never to do it on a worker.
//   stored        a pg_authid-style secret: no PBKDF2 at all.
//   plain_cached  a plain-text password through ScramKeyCache::SecretForPlainPassword:
//                 PBKDF2 ran once, before the loop.
//
// The client's messages are computed outside the timed region where they can be (fixed
// nonces), so the numbers are the server's cost alone. In the uncached case the client side
// (pass-through keys, three HMACs) is timed too; it is noise next to PBKDF2.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "proto/scram.h"

namespace rb::proto {
namespace {

constexpr absl::string_view kClientNonce = "fyko+d2lbbFgONRv9qkxdawL";
constexpr absl::string_view kServerNonce = "3rfcNHYJY1ZVvWVs7j";

struct Messages {
  std::string client_first, client_final;
};

// Runs a client against a throwaway server to produce the client's two messages for `secret`.
Messages ClientMessages(const ScramSecret& secret, const ScramPassThroughKeys& keys) {
  ScramServer server(secret, kServerNonce);
  ScramClient client = ScramClient::WithKeys(keys, kClientNonce);
  Messages m;
  std::string server_first, server_final;
  if (client.ClientFirst(&m.client_first) != ScramResult::kOk ||
      server.HandleClientFirst(m.client_first, &server_first) != ScramResult::kOk ||
      client.HandleServerFirst(server_first, &m.client_final) != ScramResult::kOk) {
    std::abort();
  }
  return m;
}

ScramPassThroughKeys KeysFor(const ScramKeys& k, const ScramSecret& s) {
  ScramPassThroughKeys keys;
  keys.client_key = k.client_key;
  keys.server_key = k.server_key;
  keys.salt = s.salt;
  keys.iterations = s.iterations;
  return keys;
}

// One server-side login; aborts on failure so a broken exchange can't look fast.
void ServerLogin(const ScramSecret& secret, const Messages& m) {
  ScramServer server(secret, kServerNonce);
  std::string server_first, server_final;
  if (server.HandleClientFirst(m.client_first, &server_first) != ScramResult::kOk ||
      server.HandleClientFinal(m.client_final, &server_final) != ScramResult::kOk) {
    std::abort();
  }
  benchmark::DoNotOptimize(server_final);
}

void BM_ScramServerLogin_Uncached(benchmark::State& state) {
  uint64_t n = 0;
  for (auto _ : state) {
    ScramSecret secret;
    secret.iterations = kScramDefaultIterations;
    secret.salt = std::string(kScramDefaultSaltLength, '\0');
    for (size_t i = 0; i < sizeof(n); ++i) secret.salt[i] = static_cast<char>(n >> (8 * i));
    ++n;
    ScramKeys k;
    if (!DeriveScramKeys("correct horse battery staple", secret.salt, secret.iterations, &k)) {
      std::abort();
    }
    secret.stored_key = k.stored_key;
    secret.server_key = k.server_key;
    ServerLogin(secret, ClientMessages(secret, KeysFor(k, secret)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ScramServerLogin_Uncached)->Unit(benchmark::kMillisecond);

void BM_ScramServerLogin_StoredSecret(benchmark::State& state) {
  ScramSecret secret;
  secret.iterations = kScramDefaultIterations;
  secret.salt = "0123456789abcdef";
  ScramKeys k;
  if (!DeriveScramKeys("correct horse battery staple", secret.salt, secret.iterations, &k)) {
    std::abort();
  }
  secret.stored_key = k.stored_key;
  secret.server_key = k.server_key;
  const Messages m = ClientMessages(secret, KeysFor(k, secret));
  for (auto _ : state) ServerLogin(secret, m);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ScramServerLogin_StoredSecret)->Unit(benchmark::kMicrosecond);

void BM_ScramServerLogin_PlainCached(benchmark::State& state) {
  ScramKeyCache cache;
  ScramSecret secret;
  if (!cache.SecretForPlainPassword("alice", "correct horse battery staple", &secret)) {
    std::abort();
  }
  ScramKeys k;
  if (!cache.Derive("correct horse battery staple", secret.salt, secret.iterations, &k)) {
    std::abort();
  }
  const Messages m = ClientMessages(secret, KeysFor(k, secret));
  for (auto _ : state) {
    ScramSecret s;
    if (!cache.SecretForPlainPassword("alice", "correct horse battery staple", &s)) std::abort();
    ServerLogin(s, m);
  }
  if (cache.DerivationsForTest() != 1) std::abort();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ScramServerLogin_PlainCached)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace rb::proto

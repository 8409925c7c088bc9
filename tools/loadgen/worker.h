// One rb-loadgen thread: its own io_uring, its share of the clients, and its own Stats.
//
// Every client goes through the same login (connect, StartupMessage, the authentication the
// server asks for, ReadyForQuery); the modes differ in what follows:
//   idle    stay logged in until the hold ends;
//   logins  Terminate at once, and start the next login;
//   query   keep --pipeline requests in flight, each a Query or an extended-protocol batch
//           ending in Sync, and time each one from its send to its ReadyForQuery.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "proto/scram.h"
#include "tools/common/conn_set.h"
#include "tools/common/message_stream.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/stats.h"

namespace rb::loadgen {

struct Client : tools::Conn {
  enum class State : uint8_t { kConnecting, kLogin, kPreparing, kReady };
  State state = State::kConnecting;
  bool first_wave = false;      // one of the first logins: the measurement waits for it
  bool fatal = false;           // a FATAL error came: the close that follows is its consequence
  bool failed_request = false;  // the oldest request in flight got an ErrorResponse
  bool refill_timer = false;    // a rate-limit timer will refill it
  bool authenticated = false;   // AuthenticationOk came (a login timeout says how far it got)
  uint32_t in_flight = 0;
  uint32_t head = 0;            // index in `starts` of the oldest request in flight
  int64_t login_start_ns = 0;
  std::unique_ptr<int64_t[]> starts;  // query: when each request in flight was due
  std::unique_ptr<proto::ScramClient> scram;
  tools::MessageStream in{proto::AssemblerMode::kTyped, 1u << 30};
};

class Worker {
 public:
  Worker(const Options& options, const WorkerPlan& plan, Stats* stats, proto::ScramKeyCache* scram_cache,
         const std::atomic<bool>* stop, const netio::Features& features)
      : o_(options), plan_(plan), stats_(stats), scram_cache_(scram_cache), stop_(stop), features_(features) {}

  void Run();

  // ConnSet's handler contract.
  void OnData(Client* c, const uint8_t* data, uint32_t len);
  void OnPeerClosed(Client* c, int res);
  void OnConnected(Client* c, int res);
  void OnFreed(Client* c);

 private:
  enum class TimerKind : uint8_t { kLoginDeadline, kRefill, kRetry, kPump };
  struct Timer {
    int64_t when;
    TimerKind kind;
    uint32_t slot, generation;
    bool operator>(const Timer& other) const { return when > other.when; }
  };

  void BuildMessages();
  void Pump();
  void StartLogin();
  bool TakeRateSlot(int64_t* due);
  bool OnMessage(Client* c, const tools::Message& m);
  bool OnAuthentication(Client* c, absl::Span<const uint8_t> body);
  void OnReadyForQuery(Client* c);
  void BecomeReady(Client* c);
  void Refill(Client* c);
  void EndLogin(bool first_wave);
  void LoginFailed(bool first_wave, absl::string_view message);
  void FailLogin(Client* c, absl::string_view message);
  void Lose(Client* c, absl::string_view message);
  void Finish(Client* c);
  void FireTimers();
  void CheckPhase();
  void StartWindow();
  void BeginStop();
  void Schedule(int64_t when, TimerKind kind, const Client* c = nullptr);

  const Options& o_;
  const WorkerPlan plan_;
  Stats* const stats_;
  proto::ScramKeyCache* const scram_cache_;
  const std::atomic<bool>* const stop_;
  const netio::Features& features_;

  tools::ThreadRing ring_;
  std::unique_ptr<tools::ConnSet<Client>> conns_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::string startup_, request_, prepare_;

  int64_t now_ = 0;
  int64_t start_ns_ = 0;
  int64_t window_start_ = -1;  // -1 until the measured window opens
  int64_t window_end_ = 0;
  int64_t drain_deadline_ = 0;
  double next_slot_ = 0;       // rate limit: when the next request or login is due
  double interval_ns_ = 0;     // rate limit: time between two of them; 0: no limit
  bool pump_timer_ = false;
  bool stopping_ = false;
  int64_t started_ = 0;        // logins started
  int64_t logging_in_ = 0;     // logins in progress
  int64_t ready_ = 0;          // clients logged in
  int64_t retry_pending_ = 0;  // failed clients waiting to be replaced
  int64_t first_pending_ = 0;  // first-wave logins not yet resolved
  int64_t issued_ = 0;         // query: requests sent; logins: logins started
  int64_t completed_ = 0;      // query: requests answered; logins: logins ended (toward --count)
};

}  // namespace rb::loadgen

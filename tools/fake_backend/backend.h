// The fake backend's threads: each owns an io_uring, its own SO_REUSEPORT TCP listeners and
// the sessions accepted on them. Thread 0 also accepts on the unix socket (one socket can't be
// shared fairly between rings: nearly every connection would go to one of them) and deals those
// connections out round-robin through netio's mailboxes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "netio/features.h"
#include "netio/mailbox.h"
#include "proto/messages.h"
#include "tools/common/conn_set.h"
#include "tools/common/message_stream.h"
#include "tools/fake_backend/statement.h"

namespace rb::fake_backend {

// The canned answers, built once and shared read-only by every thread.
struct Replies {
  std::string row_description;  // one column "?column?": int4, or text with --row-bytes
  std::string rows_and_complete;  // --rows DataRows, then CommandComplete "SELECT n"
  void Build(int64_t rows, int64_t row_bytes);
};

// What the threads share, set up by main before they start.
struct Shared {
  netio::Features features;
  Replies replies;
  int unix_fd = -1;  // accepted by thread 0 only
  std::vector<std::unique_ptr<netio::Mailbox>> mailboxes;  // one per thread; thread 0 sends
  std::unique_ptr<std::atomic<int>[]> ring_fds;            // for the MSG_RING doorbells
  std::atomic<int> rings_ready{0};
  std::atomic<bool> stop{false};
};

// One client session: PostgreSQL's per-backend state, as far as a pooler can observe it.
struct Session : tools::Conn {
  // Each reported parameter's value: now, for the session (what survives the transaction
  // block), at BEGIN (what ROLLBACK restores), at login (what RESET restores), and as the client
  // last heard it. PostgreSQL 14+ reports changes just before ReadyForQuery.
  struct Param {
    std::string current, session, at_begin, startup, reported;
  };
  struct Statement {
    Command command;
    int param_count = 0;
  };

  tools::MessageStream in{proto::AssemblerMode::kStartup, proto::kMaxStartupPacketLength};
  bool logged_in = false;
  uint8_t txn = proto::kTxnIdle;
  bool skip_to_sync = false;  // an extended-protocol error: discard until Sync
  Param params[kParamCount];
  std::optional<Statement> unnamed_statement;
  std::optional<Command> unnamed_portal;
  absl::flat_hash_map<std::string, Statement> statements;
  absl::flat_hash_map<std::string, Command> portals;
};

class BackendThread {
 public:
  BackendThread(int index, Shared* shared, std::vector<int> tcp_fds)
      : index_(index), shared_(shared), tcp_fds_(std::move(tcp_fds)) {}
  // Runs until shared->stop. Returns false (with a message on stderr) if the ring can't be set up.
  bool Run();

  // ConnSet's handler contract.
  void OnData(Session* s, const uint8_t* data, uint32_t len);
  void OnPeerClosed(Session* s, int /*res*/) { conns_->Close(s); }
  void OnConnected(Session*, int) {}
  void OnFreed(Session*) {}

 private:
  void Dispatch(const io_uring_cqe& cqe);
  void ArmAccept(uint32_t index);
  void Adopt(int fd);
  void HandOut(int fd);
  bool OnStartup(Session* s, const tools::Message& m);
  bool OnMessage(Session* s, const tools::Message& m);
  void Fatal(Session* s, absl::string_view sqlstate, absl::string_view message);
  void Error(Session* s, absl::string_view sqlstate, absl::string_view message);
  bool Execute(Session* s, const Command& c, bool describe);
  void RunQuery(Session* s, absl::string_view sql);
  void SendReady(Session* s);
  void Describe(Session* s, const Command& c);
  Session::Statement* FindStatement(Session* s, absl::string_view name);
  Command* FindPortal(Session* s, absl::string_view name);

  const int index_;
  Shared* const shared_;
  std::vector<int> tcp_fds_;  // listener 0..n-1; the unix listener is index n on thread 0
  tools::ThreadRing ring_;
  std::unique_ptr<tools::ConnSet<Session>> conns_;
  uint32_t next_thread_ = 0;  // round-robin for unix connections
  uint32_t key_counter_ = 0;
  uint64_t rng_ = 0;
};

}  // namespace rb::fake_backend

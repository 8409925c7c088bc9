// The control thread: it owns the listening sockets until the workers take them, starts the
// workers, turns signals into actions (reload, the shutdown modes, pause), writes the stats
// line, and speaks sd_notify. It never touches a connection: everything it asks of a worker
// goes through that worker's mailbox (DESIGN.md decisions 1 and 8).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/config.h"
#include "engine/shared_state.h"
#include "engine/worker.h"
#include "netio/features.h"
#include "netio/ring.h"

namespace rb::engine {

struct SupervisorOptions {
  std::string config_path;
  bool quiet = false;
  bool daemon = false;
  int verbose = 0;
  std::string user;  // -u
};

class Supervisor {
 public:
  Supervisor(SupervisorOptions options, Config config, netio::Features features);
  ~Supervisor();

  // Binds, starts the workers, and serves until shutdown. Returns the exit status.
  int Run();

 private:
  absl::Status OpenListeners(std::vector<std::vector<ListenerSpec>>* per_worker);
  absl::Status DropPrivileges();
  void ApplyLogSettings(const Settings& s);
  void Reload();
  void Broadcast(const netio::MailMessage& m);
  void Post(int worker, const netio::MailMessage& m);
  void Shutdown(ShutdownMode mode);
  void LogStats();
  std::string StatusLine();
  bool AllWorkersFinished() const;

  SupervisorOptions options_;
  std::shared_ptr<const Config> config_;
  netio::Features features_;
  std::unique_ptr<SharedState> shared_;
  std::unique_ptr<netio::Ring> ring_;  // only for MSG_RING doorbells to the workers
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  bool shutting_down_ = false;
  ShutdownMode shutdown_mode_ = ShutdownMode::kImmediate;
  int log_fd_ = -1;
  std::string pidfile_;
  // For the per-second rates of the stats line.
  uint64_t last_xacts_ = 0, last_queries_ = 0, last_in_ = 0, last_out_ = 0, last_xact_us_ = 0, last_query_us_ = 0,
           last_wait_us_ = 0;
  int64_t last_stats_ns_ = 0;
};

}  // namespace rb::engine

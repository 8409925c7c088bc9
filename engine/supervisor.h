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
#include "netio/systemd.h"

namespace rb::engine {

struct SupervisorOptions {
  std::string config_path;
  bool quiet = false;
  bool daemon = false;
  int verbose = 0;
  std::string user;  // -u
  // Sockets passed by systemd, taken in main before -d forks (LISTEN_PID names the first pid).
  std::vector<netio::PassedSocket> passed;
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
  // Re-reads the config file, the auth_file and the hba file and hands the workers the new
  // snapshot. An invalid config changes nothing; the status says why (and it is logged).
  absl::Status Reload();
  // The admin console's SET: one reloadable setting, then the same hand-out as a reload.
  absl::Status SetSetting(const std::string& key, const std::string& value);
  void PublishConfig(std::shared_ptr<const Config> config);
  void PrepareScramSecrets();
  void Broadcast(const netio::MailMessage& m);
  // False (and nothing sent) when the worker's loop has ended: nobody would drain its mailbox.
  bool Post(int worker, const netio::MailMessage& m);
  // Requests from the admin console (the control inbox).
  void HandleControl();
  // Pause and resume for the whole process (SIGUSR1, SIGUSR2).
  void Pause();
  void Resume();
  // The admin console's tick: pending PAUSE/WAIT_CLOSE re-count, paused pools drop idle
  // servers, and every stats_period the SHOW STATS averages move on.
  void Tick(uint32_t flags);
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
  // The pools' totals at the last stats line, for the next one's per-period averages.
  struct StatsTotals {
    uint64_t xacts = 0, queries = 0, client_parses = 0, server_parses = 0, binds = 0, in = 0, out = 0, xact_us = 0,
             query_us = 0, wait_us = 0, assignments = 0;
  };
  StatsTotals last_stats_;
  int64_t last_stats_ns_ = 0;
};

}  // namespace rb::engine

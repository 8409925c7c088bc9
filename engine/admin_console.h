// The admin console: the virtual database "pgbouncer", spoken to with the simple query
// protocol, with PgBouncer 1.25's commands, texts and result columns.
//
// One AdminConsole per worker. SHOW commands gather every worker's part through mailbox
// messages (admin_request.h), so the numbers are the process's, not one worker's. Commands that
// wait (PAUSE, SUSPEND, WAIT_CLOSE) re-count on every tick of the control thread until nothing
// is left, then answer.
//
// The code is split by subject, all methods of this class (it is Worker's friend):
//   admin_console.cc   sessions, the query loop, dispatch, access, replies, mail
//   admin_show.cc      SHOW: each worker's part, and rendering the merged result
//   admin_commands.cc  PAUSE, RESUME, KILL, RECONNECT, ... on each worker
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/pool.h"
#include "netio/mailbox.h"

namespace rb::engine {

class Worker;
struct ClientConn;
struct ServerConn;
struct AdminRequest;
struct AdminWorkerPart;
struct AdminSession;
enum class AdminOp : uint8_t;
enum class ShowKind : uint8_t;

class AdminConsole {
 public:
  explicit AdminConsole(Worker* worker);
  ~AdminConsole();

  // The client logged in to "pgbouncer": send the welcome.
  void Start(ClientConn* c, const std::string& user);
  // Bytes from an admin client.
  void OnBytes(ClientConn* c, const uint8_t* data, uint32_t len);
  void OnMail(const netio::MailMessage& m);
  void OnClose(ClientConn* c);
  // Posts `r` to every running worker and fills this worker's part at once. When the last part
  // is in, the answer is rendered on this worker: to the console client the request names, or
  // handed to the MetricsServer (reply_to kMetrics), which then owns it.
  void Gather(AdminRequest* r);

 private:
  // ---- admin_console.cc ----
  void HandleQuery(ClientConn* c, const std::string& sql);
  bool HandleShow(ClientConn* c, const std::string& what);
  void Reply(ClientConn* c, const std::string& bytes, bool ready = true);
  void ReplyError(ClientConn* c, const std::string& message, const char* sqlstate = "08P01");
  void ReplyTag(ClientConn* c, const std::string& tag);
  bool RequireAdmin(ClientConn* c);
  // Starts a request on every worker (or the control thread); the client waits for it.
  void Broadcast(ClientConn* c, AdminRequest* r);
  void StartRequest(ClientConn* c, AdminRequest* r);  // Broadcast, with the session busy
  void SendToControl(ClientConn* c, AdminRequest* r);
  void RunPart(AdminRequest* r);
  void Finish(AdminRequest* r);
  void Continue(ClientConn* c);  // the answer is out: take the next query
  void OnTick(uint32_t flags, int64_t now_ns);
  void WaitFor(ClientConn* c, AdminOp op, const std::string& db);
  bool DatabaseKnown(const std::string& db, bool register_auto) const;
  void WakeWorkers();

  // ---- admin_show.cc ----
  void FillShowPart(AdminRequest* r, AdminWorkerPart* part);
  void FillPools(AdminWorkerPart* part, bool with_stats, bool with_latency = false);
  void FillSockets(ShowKind kind, AdminWorkerPart* part);
  std::vector<std::optional<std::string>> ClientRow(ClientConn* c, const char* state, bool debug);
  std::vector<std::optional<std::string>> ServerRow(ServerConn* s, const char* state, bool debug);
  void FillTotals(AdminWorkerPart* part);
  std::string RenderShow(AdminRequest* r);
  std::string RenderLocalShow(ShowKind kind);
  std::string ShowConfig();
  std::string ShowPeers();
  std::string ShowPeerPools();
  std::string ShowState();
  std::string ShowVersion();
  std::string ShowFds();
  std::string ShowDnsZones();
  std::string ShowHelp();
  std::string RenderLatency(const AdminRequest& r);
  void RotateStats(int64_t now_ns);

  // ---- admin_commands.cc ----
  void RunCommandPart(AdminRequest* r, AdminWorkerPart* part);
  bool PoolMatches(const Pool* pool, const std::string& db) const;
  int CloseIdleServers(const std::string& db, bool paused_only, bool close_needed_only);
  int CountBusyServers(const std::string& db);
  int CountCloseNeeded(const std::string& db);
  int KillPools(const std::string& db);
  bool KillClient(const std::string& id);
  void Reconnect(const std::string& db);
  void Upkeep();
  std::string CompleteWait(ClientConn* c, AdminRequest* r);

  Worker* worker_;
  // SHOW STATS averages, as PgBouncer: every stats_period the totals are shifted into
  // `newer` and `newer` into `older`; an average covers the time from the older snapshot.
  struct StatsSnapshot {
    PoolStats newer;
    PoolStats older;
  };
  absl::flat_hash_map<const void*, StatsSnapshot> snapshots_;  // by PoolShared*
  int64_t old_stamp_ns_ = 0;
  int64_t new_stamp_ns_ = 0;
  // Admin clients of this worker waiting for PAUSE, SUSPEND or WAIT_CLOSE to finish.
  std::vector<std::pair<uint32_t, uint32_t>> waiting_;  // slot, generation
};

}  // namespace rb::engine

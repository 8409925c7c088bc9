#include "engine/shared_state.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace rb::engine {

ControlInbox::ControlInbox() {
  fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd_ < 0) {
    // Environment failure at start-up: fatal and loud (DESIGN.md decision 12).
    perror("eventfd");
    abort();
  }
}

ControlInbox::~ControlInbox() {
  if (fd_ >= 0) close(fd_);
}

void ControlInbox::Push(const netio::MailMessage& m) {
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(m);
  }
  uint64_t one = 1;
  // EAGAIN means the counter is already huge: the control thread has a wake-up pending anyway.
  (void)!write(fd_, &one, sizeof(one));
}

std::vector<netio::MailMessage> ControlInbox::Take() {
  uint64_t n;
  (void)!read(fd_, &n, sizeof(n));
  absl::MutexLock lock(&mu_);
  std::vector<netio::MailMessage> out;
  out.swap(queue_);
  return out;
}

SharedState::SharedState(int workers, uint32_t mailbox_capacity) {
  for (int w = 0; w < workers; ++w) {
    auto e = std::make_unique<WorkerEndpoint>();
    e->mailbox = std::make_unique<netio::Mailbox>(workers + 1, mailbox_capacity);
    endpoints_.push_back(std::move(e));
  }
}

PoolShared* SharedState::Pool(const std::string& db, const std::string& user) {
  std::string key = absl::StrCat(db, absl::string_view("\0", 1), user);
  absl::MutexLock lock(&mu_);
  auto& p = pools_[key];
  if (!p) p = std::make_unique<PoolShared>(db, user, workers());
  return p.get();
}

DatabaseShared* SharedState::Database(const std::string& db) {
  absl::MutexLock lock(&mu_);
  auto& p = databases_[db];
  if (!p) {
    p = std::make_unique<DatabaseShared>();
    // A database met during a process-wide pause is paused too.
    if (pause_mode() != PauseMode::kNone) p->paused.store(true, std::memory_order_release);
  }
  return p.get();
}

DatabaseShared* SharedState::FindDatabase(const std::string& db) {
  absl::MutexLock lock(&mu_);
  auto it = databases_.find(db);
  return it == databases_.end() ? nullptr : it->second.get();
}

UserShared* SharedState::FindUser(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  return it == users_.end() ? nullptr : it->second.get();
}

std::vector<std::string> SharedState::DatabaseNames() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  out.reserve(databases_.size());
  for (const auto& [name, d] : databases_) out.push_back(name);
  return out;
}

void SharedState::SetPauseMode(PauseMode mode) {
  absl::MutexLock lock(&mu_);
  pause_mode_.store(static_cast<int>(mode), std::memory_order_release);
  bool global = mode != PauseMode::kNone;
  for (auto& [name, d] : databases_) {
    d->paused.store(global || d->db_paused.load(std::memory_order_relaxed), std::memory_order_release);
  }
}

void SharedState::SetDatabasePaused(const std::string& db, bool paused) {
  absl::MutexLock lock(&mu_);
  auto& p = databases_[db];
  if (!p) p = std::make_unique<DatabaseShared>();
  p->db_paused.store(paused, std::memory_order_relaxed);
  p->paused.store(paused || pause_mode() != PauseMode::kNone, std::memory_order_release);
}

UserShared* SharedState::User(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto& p = users_[user];
  if (!p) p = std::make_unique<UserShared>();
  return p.get();
}

}  // namespace rb::engine

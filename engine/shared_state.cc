#include "engine/shared_state.h"

#include "absl/strings/str_cat.h"

namespace rb::engine {

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
  if (!p) p = std::make_unique<DatabaseShared>();
  return p.get();
}

UserShared* SharedState::User(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto& p = users_[user];
  if (!p) p = std::make_unique<UserShared>();
  return p.get();
}

}  // namespace rb::engine

#include "cluster/store_follower.h"

namespace corral::cluster {

StoreFollower::StoreFollower(store::Store& store, policy::PolicyService& policy,
                             auth::TokenCache* tokens, Options options)
    : store_(store),
      policy_(policy),
      tokens_(tokens),
      options_(std::move(options)),
      looked_at_ms_(store::now_ms()) {
  if (store_.shared()) thread_ = std::thread([this] { run(); });
}

StoreFollower::~StoreFollower() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StoreFollower::follow_once() {
  int64_t now = store::now_ms();
  try {
    std::string problem;
    if (policy_.follow_store(&problem)) {
      if (options_.on_change) {
        options_.on_change("policy", "policy version " +
                                         std::to_string(policy_.current()->version) +
                                         ", stored through another node, is now in force");
      }
    } else if (!problem.empty() && options_.on_problem) {
      options_.on_problem(problem);
    }
    if (tokens_ != nullptr) {
      for (const auto& id :
           store_.tokens_revoked_since(looked_at_ms_ - options_.clock_margin.count())) {
        tokens_->forget_token(id);
      }
    }
    looked_at_ms_ = now;
    failing_ = false;
  } catch (const std::exception& error) {
    if (!failing_ && options_.on_problem) options_.on_problem(error.what());
    failing_ = true;
  }
}

void StoreFollower::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    follow_once();
    lock.lock();
    wake_.wait_for(lock, options_.period, [this] { return stopping_; });
  }
}

}  // namespace corral::cluster

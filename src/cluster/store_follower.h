// What a corrald node keeps in memory of a store other nodes share, kept in step with it: the
// policy in force and the token cache. Every `period` (250 ms by default) it asks the store for a
// newer policy version, which it puts in force, and for tokens revoked since its last look (less
// a margin for the nodes' clocks), which it drops from the cache: a change made through one node
// is in force on every node within about a period. On a store no other node uses it does
// nothing, since every change then goes through this node.
//
// Called from its own thread; the store, policy and cache are thread-safe already. A store that
// cannot be reached is reported through `on_problem` (at most once per failure streak) and asked
// again at the next period.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "auth/auth.h"
#include "policy/policy_service.h"
#include "store/store.h"

namespace corral::cluster {

class StoreFollower {
 public:
  struct Options {
    std::chrono::milliseconds period{250};
    // How far back each look for revocations reaches past the previous one: revocations are
    // stamped with the revoking node's clock, which may be behind this one's.
    std::chrono::milliseconds clock_margin{5'000};
    std::function<void(const std::string& what, const std::string& detail)> on_change = {};
    std::function<void(const std::string& problem)> on_problem = {};
  };

  StoreFollower(store::Store& store, policy::PolicyService& policy, auth::TokenCache* tokens,
                Options options);
  ~StoreFollower();  // stops the thread
  StoreFollower(const StoreFollower&) = delete;
  StoreFollower& operator=(const StoreFollower&) = delete;

  // One look, as the thread takes it every period (for tests).
  void follow_once();

 private:
  void run();

  store::Store& store_;
  policy::PolicyService& policy_;
  auth::TokenCache* tokens_;
  Options options_;
  int64_t looked_at_ms_;
  bool failing_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace corral::cluster

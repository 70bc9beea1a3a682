// The problems a policy document is refused with; a test failure if it is accepted.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy/policy.h"

namespace corral::testing {

inline std::vector<policy::Problem> problems_of(const std::string& yaml) {
  try {
    policy::Policy::parse(yaml);
  } catch (const policy::PolicyInvalid& invalid) {
    return invalid.problems();
  }
  ADD_FAILURE() << "the document was accepted:\n" << yaml;
  return {};
}

}  // namespace corral::testing

// docs/openapi.yaml and the routes corrald serves are the same set: a route added to one and not
// the other fails here.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "api/api.h"

namespace {

std::set<std::string> documented_routes() {
  YAML::Node document = YAML::LoadFile(std::string(CORRAL_SOURCE_DIR) + "/docs/openapi.yaml");
  std::set<std::string> routes;
  for (const auto& path : document["paths"]) {
    for (const auto& operation : path.second) {
      std::string method = operation.first.as<std::string>();
      if (method == "parameters" || method == "summary" || method == "description") continue;
      for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      routes.insert(method + " " + path.first.as<std::string>());
    }
  }
  return routes;
}

TEST(OpenApi, DocumentedRoutesAreExactlyTheServedRoutes) {
  std::set<std::string> served;
  for (const auto& route : corral::api::route_table())
    served.insert(route.method + " " + route.pattern);
  std::set<std::string> documented = documented_routes();
  for (const auto& route : served)
    EXPECT_TRUE(documented.contains(route)) << route << " is served but not documented";
  for (const auto& route : documented)
    EXPECT_TRUE(served.contains(route)) << route << " is documented but not served";
}

TEST(OpenApi, EachOperationListsTheRolesTheServerEnforces) {
  YAML::Node document = YAML::LoadFile(std::string(CORRAL_SOURCE_DIR) + "/docs/openapi.yaml");
  for (const auto& route : corral::api::route_table()) {
    std::string method = route.method;
    for (char& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    YAML::Node operation = document["paths"][route.pattern][method];
    ASSERT_TRUE(operation) << route.pattern;
    std::set<std::string> documented;
    for (const auto& role : operation["x-corral-roles"]) documented.insert(role.as<std::string>());
    std::set<std::string> enforced;
    for (auto role : route.roles) enforced.insert(std::string(corral::auth::to_string(role)));
    EXPECT_EQ(documented, enforced) << route.method << " " << route.pattern;
  }
}

}  // namespace

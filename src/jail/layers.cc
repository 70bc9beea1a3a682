#include <stdexcept>

#include "jail/jail.h"

namespace corral::jail {

std::string_view to_string(Layer layer) {
  switch (layer) {
    case Layer::namespaces:
      return "namespaces";
    case Layer::filesystem:
      return "filesystem";
    case Layer::network:
      return "network";
    case Layer::rlimits:
      return "rlimits";
    case Layer::cgroup:
      return "cgroup";
    case Layer::process:
      return "process";
    case Layer::capabilities:
      return "capabilities";
    case Layer::seccomp:
      return "seccomp";
  }
  return "?";
}

std::optional<Layer> layer_from_string(std::string_view name) {
  for (Layer layer : kAllLayers) {
    if (to_string(layer) == name) return layer;
  }
  return std::nullopt;
}

LayerSet LayerSet::all() {
  LayerSet set;
  for (Layer layer : kAllLayers) set.add(layer);
  return set;
}

LayerSet LayerSet::parse(std::string_view list) {
  if (list == "all") return all();
  LayerSet set;
  if (list == "none" || list.empty()) return set;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    auto layer = layer_from_string(name);
    if (!layer) {
      std::string known;
      for (Layer each : kAllLayers)
        known += (known.empty() ? "" : ", ") + std::string(jail::to_string(each));
      throw std::invalid_argument("unknown jail layer '" + std::string(name) +
                                  "'; the layers are " + known);
    }
    set.add(*layer);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return set;
}

std::string LayerSet::to_string() const {
  std::string list;
  for (Layer layer : kAllLayers) {
    if (has(layer)) list += (list.empty() ? "" : ",") + std::string(jail::to_string(layer));
  }
  return list.empty() ? "none" : list;
}

}  // namespace corral::jail

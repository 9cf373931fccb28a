#include "analysis/trial_groups.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace bitsweep::analysis {
namespace {

template <typename Trials>
std::vector<TrialGroup> Group(const Trials& trials) {
  std::vector<TrialGroup> groups;
  std::map<std::vector<ParamValue>, size_t> index;
  for (const v1::Trial& trial : trials) {
    std::vector<ParamValue> params;
    for (const v1::TrialParam& p : trial.params()) params.push_back({p.path(), p.value()});
    auto [it, inserted] = index.try_emplace(params, groups.size());
    if (inserted) {
      groups.emplace_back();
      groups.back().params = std::move(params);
    }
    TrialGroup& g = groups[it->second];
    switch (trial.state()) {
      case v1::TRIAL_STATE_DONE: {
        const v1::TrialResult& r = trial.result();
        if (r.outcome() == v1::TRIAL_OUTCOME_PRUNED) {
          ++g.pruned;
          break;
        }
        (r.outcome() == v1::TRIAL_OUTCOME_DIVERGED ? g.diverged : g.completed)++;
        g.samples.push_back(
            {trial.id(), trial.seed(), r.final_test_accuracy(), r.iterations_to_target()});
        break;
      }
      case v1::TRIAL_STATE_FAILED:
        ++g.failed;
        break;
      case v1::TRIAL_STATE_CANCELLED:
        ++g.cancelled;
        break;
      default:
        ++g.unfinished;
    }
  }
  for (TrialGroup& g : groups) {
    std::vector<double> acc;
    for (const TrialSample& s : g.samples) acc.push_back(s.final_accuracy);
    g.final_accuracy = Summarize(acc);
  }
  return groups;
}

}  // namespace

const std::string& TrialGroup::Value(const std::string& path) const {
  static const std::string* const kEmpty = new std::string();
  for (const ParamValue& p : params) {
    if (p.path == path) return p.value;
  }
  return *kEmpty;
}

std::vector<TrialGroup> GroupTrials(const google::protobuf::RepeatedPtrField<v1::Trial>& trials) {
  return Group(trials);
}
std::vector<TrialGroup> GroupTrials(const std::vector<v1::Trial>& trials) { return Group(trials); }

std::vector<std::string> ParameterPaths(const std::vector<TrialGroup>& groups) {
  std::vector<std::string> paths;
  for (const TrialGroup& g : groups) {
    for (const ParamValue& p : g.params) {
      if (std::find(paths.begin(), paths.end(), p.path) == paths.end()) paths.push_back(p.path);
    }
  }
  return paths;
}

std::vector<ParamValue> WithoutPaths(const std::vector<ParamValue>& params,
                                     const std::vector<std::string>& drop) {
  std::vector<ParamValue> out;
  for (const ParamValue& p : params) {
    if (std::find(drop.begin(), drop.end(), p.path) == drop.end()) out.push_back(p);
  }
  return out;
}

std::string DescribeParams(const std::vector<ParamValue>& params) {
  std::string out;
  for (const ParamValue& p : params) {
    const size_t dot = p.path.rfind('.');
    // Keep "default.format" rather than just "format": the site matters.
    size_t start = 0;
    if (dot != std::string::npos) {
      const size_t prev = p.path.rfind('.', dot - 1);
      start = prev == std::string::npos ? 0 : prev + 1;
    }
    absl::StrAppend(&out, out.empty() ? "" : ", ", p.path.substr(start), "=", p.value);
  }
  return out.empty() ? "(all)" : out;
}

}  // namespace bitsweep::analysis

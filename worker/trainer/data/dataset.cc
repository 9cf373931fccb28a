#include "worker/trainer/data/dataset.h"

#include "absl/strings/str_cat.h"
#include "worker/trainer/data/cifar10_loader.h"
#include "worker/trainer/data/idx_loader.h"
#include "worker/trainer/data/synthetic.h"

namespace bitsweep::trainer {
namespace {

absl::StatusOr<std::shared_ptr<const Dataset>> LoadIdxDataset(const std::string& name,
                                                              const std::filesystem::path& dir) {
  auto dataset = std::make_shared<Dataset>();
  dataset->name = name;
  dataset->channels = 1;
  dataset->num_classes = 10;
  struct Split {
    const char* prefix;
    std::vector<float>* images;
    std::vector<uint8_t>* labels;
  };
  const Split splits[] = {{"train", &dataset->train_images, &dataset->train_labels},
                          {"t10k", &dataset->test_images, &dataset->test_labels}};
  for (const Split& split : splits) {
    auto images_path = FindIdxFile(dir, absl::StrCat(split.prefix, "-images-idx3-ubyte"));
    if (!images_path.ok()) return images_path.status();
    auto labels_path = FindIdxFile(dir, absl::StrCat(split.prefix, "-labels-idx1-ubyte"));
    if (!labels_path.ok()) return labels_path.status();
    auto images = ReadIdxImages(*images_path);
    if (!images.ok()) return images.status();
    auto labels = ReadIdxLabels(*labels_path, dataset->num_classes);
    if (!labels.ok()) return labels.status();
    if (static_cast<int64_t>(labels->size()) != images->count) {
      return absl::DataLossError(absl::StrCat(labels_path->string(), ": ", labels->size(),
                                              " labels but ", images_path->string(), " has ",
                                              images->count, " images"));
    }
    if (dataset->height != 0 &&
        (dataset->height != images->rows || dataset->width != images->cols)) {
      return absl::DataLossError(absl::StrCat(images_path->string(), ": images are ", images->rows,
                                              "x", images->cols, ", not ", dataset->height, "x",
                                              dataset->width));
    }
    dataset->height = images->rows;
    dataset->width = images->cols;
    *split.images = std::move(images->pixels);
    *split.labels = std::move(*labels);
  }
  return std::shared_ptr<const Dataset>(std::move(dataset));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Dataset>> LoadDataset(const std::string& name,
                                                           const std::filesystem::path& data_dir) {
  if (name == "synthetic") return std::make_shared<const Dataset>(MakeSyntheticDataset());
  if (name == "mnist" || name == "fashion-mnist") return LoadIdxDataset(name, data_dir / name);
  if (name == "cifar10") {
    auto d = LoadCifar10(data_dir / name);
    if (!d.ok()) return d.status();
    return std::make_shared<const Dataset>(std::move(*d));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dataset '", name, "'; known: mnist, fashion-mnist, cifar10, synthetic"));
}

}  // namespace bitsweep::trainer

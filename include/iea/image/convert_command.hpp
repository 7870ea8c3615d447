#pragma once

/// `image-edit-agent convert IN OUT [--for-validation] [--png-compression N]
/// [--time-limit SECONDS]`: the service's own intake path from the command line. Writes the
/// model-ready PNG (or, with --for-validation, the vision-model copy, whose real extension
/// replaces OUT's when it is a JPEG) and exits 0; otherwise prints one plain-words line on
/// stderr and exits 1 (2 for a usage error). The decode runs under the service's CPU, memory
/// and wall-clock limits (--time-limit lowers the last two), so a file that hangs a decoder
/// ends with a refusal, never a hang.
///
/// The process is replaced by `image-decode-worker convert ...` (next to this
/// executable or $IEA_DECODE_WORKER); the call returns only for a usage error or when the
/// helper cannot be started.

#include <string>
#include <vector>

namespace iea::image {

[[nodiscard]] int run_convert_command(const std::vector<std::string>& arguments);

}  // namespace iea::image

/// \file
/// rdrop: R-Drop (regularized dropout) losses with analytic gradients for
/// C++ training code. Include this header for everything.
#pragma once

#include "rdrop/consistency.hpp"
#include "rdrop/cross_entropy.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/dropout.hpp"
#include "rdrop/duplicate.hpp"
#include "rdrop/jensen_shannon.hpp"
#include "rdrop/kernels.hpp"
#include "rdrop/kl_divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/linear_loss.hpp"
#include "rdrop/multi_label.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/paired_loss.hpp"
#include "rdrop/rdrop_loss.hpp"
#include "rdrop/reduction.hpp"
#include "rdrop/regression.hpp"
#include "rdrop/symmetric_kl.hpp"
#include "rdrop/terms.hpp"
#include "rdrop/threads.hpp"
#include "rdrop/version.hpp"

/// \namespace rdrop
/// R-Drop losses with analytic gradients for the 2B output rows of a
/// duplicated batch, and the pieces around them: the layout of the two
/// copies, dropout, the divergences, the consistency measure. Names in a
/// `detail` namespace are not API.

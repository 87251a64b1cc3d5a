// The flat weight list of one tier network as the tier samplers take it (melnet_fast::sample_tier): the one
// definition of its order, names, shapes and of how the kernels use each tensor. Torch-free: read by the C++ CPU
// sampler, the CUDA sampler (host and kernel) and the CUDA emulator; Python reads the same table from the
// extension (melnet_fast._C.sampler_layout, used by melnet_fast/ops/tier_sampling/layout.py and by the module that
// builds the list, TierNetwork.sampler_weights).
//
// The list is a sequence of sections, each a table of entries repeated some number of times: the inputs once, the
// layer block once per layer, the head once. Readers address a tensor by (section, entry, copy) through Layout,
// never by arithmetic of their own, so a new section (say a per-frame block of a text-conditioned initial tier) or
// another sampler design with its own tables (say projections folded into the next layer's input weights, in a
// section of its own) extends the table without touching the readers of the existing entries.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define MF_LAYOUT __host__ __device__ __forceinline__
#else
#define MF_LAYOUT inline
#endif

namespace melnet_fast {
namespace sampler_layout {

// A dimension of an entry's shape: coef x unit, the unit 1, the hidden size D or the number of mixture components K.
enum Unit : int8_t { kOne = 0, kD = 1, kK = 2 };
struct Dim {
  int8_t coef;
  Unit unit;
};

// How the samplers use a tensor: a weight matrix [..., out, in] applied as W x (the CPU sampler reads it transposed),
// a vector (a bias, or a [D, 1] weight of a scalar input, read as its D elements), or an initial LSTM state.
enum Kind : int8_t { kMatrix = 0, kVector = 1, kState = 2 };

struct Entry {
  const char* key;   // short name for code (melnet_fast/ops/tier_sampling/layout.py's namedtuple fields)
  const char* name;  // the TierNetwork parameter it holds; "{l}" stands for the layer number
  Kind kind;
  int8_t rank;
  Dim shape[3];
};

// ---- Sections, in the order of the list. The folded sections are present only in the folded list of the second
// CUDA sampler design (Layout(L, true)): the base list (Layout(L)) is its prefix.
enum Section : int8_t { kInputs = 0, kLayers = 1, kHead = 2, kFolded = 3, kFoldedHead = 4, kSectionCount = 5 };

// The previous element's projections into the first inputs of the two stacks.
enum InputEntry : int8_t { kXtW, kXtB, kXfW, kXfB, kInputCount };
// One layer: the time-delayed layer's three LSTMs (directions t+, f+, f-: index 0 the time LSTM, 1 and 2 the two
// frequency sweeps) and projection, then the frequency-delayed layer's LSTM and projection.
enum LayerEntry : int8_t {
  kTWih,
  kTWhh,
  kTBias,
  kTH0,
  kTC0,
  kTProjW,
  kTProjB,
  kFWih,
  kFWhh,
  kFBias,
  kFH0,
  kFC0,
  kFProjW,
  kFProjB,
  kLayerCount
};
enum HeadEntry : int8_t { kHeadW, kHeadB, kHeadCount };
// Projections folded into the next matrix that reads them (csrc/cuda/sample_tier_flags_kernel.cuh): copy l of the
// folded section holds W_ih^(l+1) W_proj^(l) (frequency-delayed layers l and l+1, for l < L-1); the folded head
// holds W_head W_proj^(L-1) and W_head b_proj^(L-1) + b_head. Computed on the host in float64 from the weights and
// rounded once to their dtype (melnet_fast/ops/tier_sampling/layout.py: fold_projections).
enum FoldedEntry : int8_t { kFoldW, kFoldedCount };
enum FoldedHeadEntry : int8_t { kHeadFoldW, kHeadFoldB, kFoldedHeadCount };

constexpr Dim one(int c) { return {static_cast<int8_t>(c), kOne}; }
constexpr Dim d(int c) { return {static_cast<int8_t>(c), kD}; }
constexpr Dim k(int c) { return {static_cast<int8_t>(c), kK}; }

inline constexpr Entry kInputEntries[kInputCount] = {
    {"xt_w", "x_time_proj.weight", kVector, 2, {d(1), one(1)}},
    {"xt_b", "x_time_proj.bias", kVector, 1, {d(1)}},
    {"xf_w", "x_freq_proj.weight", kVector, 2, {d(1), one(1)}},
    {"xf_b", "x_freq_proj.bias", kVector, 1, {d(1)}},
};
inline constexpr Entry kLayerEntries[kLayerCount] = {
    {"t_w_ih", "time_layers.{l}.lstm.w_ih", kMatrix, 3, {one(3), d(4), d(1)}},
    {"t_w_hh", "time_layers.{l}.lstm.w_hh", kMatrix, 3, {one(3), d(4), d(1)}},
    {"t_bias", "time_layers.{l}.lstm.bias", kVector, 2, {one(3), d(4)}},
    {"t_h0", "time_layers.{l}.lstm.h0", kState, 2, {one(3), d(1)}},
    {"t_c0", "time_layers.{l}.lstm.c0", kState, 2, {one(3), d(1)}},
    {"t_proj_w", "time_layers.{l}.proj.weight", kMatrix, 2, {d(1), d(3)}},
    {"t_proj_b", "time_layers.{l}.proj.bias", kVector, 1, {d(1)}},
    {"f_w_ih", "freq_layers.{l}.lstm.w_ih", kMatrix, 3, {one(1), d(4), d(1)}},
    {"f_w_hh", "freq_layers.{l}.lstm.w_hh", kMatrix, 3, {one(1), d(4), d(1)}},
    {"f_bias", "freq_layers.{l}.lstm.bias", kVector, 2, {one(1), d(4)}},
    {"f_h0", "freq_layers.{l}.lstm.h0", kState, 2, {one(1), d(1)}},
    {"f_c0", "freq_layers.{l}.lstm.c0", kState, 2, {one(1), d(1)}},
    {"f_proj_w", "freq_layers.{l}.proj.weight", kMatrix, 2, {d(1), d(1)}},
    {"f_proj_b", "freq_layers.{l}.proj.bias", kVector, 1, {d(1)}},
};
inline constexpr Entry kHeadEntries[kHeadCount] = {
    {"head_w", "head.weight", kMatrix, 2, {k(3), d(1)}},
    {"head_b", "head.bias", kVector, 1, {k(3)}},
};

inline constexpr Entry kFoldedEntries[kFoldedCount] = {
    {"f_fold_w", "freq_layers.{l+1}.lstm.w_ih[0] @ freq_layers.{l}.proj.weight", kMatrix, 2, {d(4), d(1)}},
};
inline constexpr Entry kFoldedHeadEntries[kFoldedHeadCount] = {
    {"head_fold_w", "head.weight @ freq_layers.{L-1}.proj.weight", kMatrix, 2, {k(3), d(1)}},
    {"head_fold_b", "head.weight @ freq_layers.{L-1}.proj.bias + head.bias", kVector, 1, {k(3)}},
};

struct SectionTable {
  const char* name;
  const Entry* entries;
  int count;
};
inline constexpr SectionTable kSections[kSectionCount] = {
    {"inputs", kInputEntries, kInputCount},
    {"layers", kLayerEntries, kLayerCount},
    {"head", kHeadEntries, kHeadCount},
    {"folded", kFoldedEntries, kFoldedCount},
    {"folded_head", kFoldedHeadEntries, kFoldedHeadCount},
};

// Size of a dimension for hidden size D and K mixture components.
MF_LAYOUT int64_t dim_size(Dim dim, int64_t D, int64_t K) {
  return dim.coef * (dim.unit == kD ? D : dim.unit == kK ? K : int64_t(1));
}

// The list of a tier with n_layers layers (folded: with the folded sections of the second CUDA sampler design).
struct Layout {
  int64_t copies[kSectionCount];  // how often each section's table repeats

  MF_LAYOUT explicit Layout(int64_t n_layers, bool folded = false)
      : copies{1, n_layers, 1, folded ? n_layers - 1 : 0, folded ? 1 : 0} {}

  // Flat index of the first tensor of section s.
  MF_LAYOUT int64_t begin(Section s) const {
    int64_t at = 0;
    for (int q = 0; q < s; ++q) at += copies[q] * count(static_cast<Section>(q));
    return at;
  }
  MF_LAYOUT static int64_t count(Section s) {
    return s == kInputs   ? int64_t(kInputCount)
           : s == kLayers ? int64_t(kLayerCount)
           : s == kHead   ? int64_t(kHeadCount)
           : s == kFolded ? int64_t(kFoldedCount)
                          : int64_t(kFoldedHeadCount);
  }
  // Flat index of entry e of copy c of section s.
  MF_LAYOUT int64_t index(Section s, int e, int64_t c = 0) const { return begin(s) + c * count(s) + e; }
  MF_LAYOUT int64_t input(InputEntry e) const { return index(kInputs, e); }
  MF_LAYOUT int64_t layer(int64_t l, LayerEntry e) const { return index(kLayers, e, l); }
  MF_LAYOUT int64_t head(HeadEntry e) const { return index(kHead, e); }
  MF_LAYOUT int64_t folded(int64_t l, FoldedEntry e) const { return index(kFolded, e, l); }
  MF_LAYOUT int64_t folded_head(FoldedHeadEntry e) const { return index(kFoldedHead, e); }
  // Number of tensors in the list.
  MF_LAYOUT int64_t size() const { return begin(kFoldedHead) + copies[kFoldedHead] * count(kFoldedHead); }

  // Which tensor flat index idx (0 <= idx < size()) is: its section, entry and copy.
  struct Place {
    Section section;
    int entry;
    int64_t copy;
  };
  MF_LAYOUT Place locate(int64_t idx) const {
    int q = 0;
    while (q + 1 < kSectionCount && idx >= begin(static_cast<Section>(q + 1))) ++q;
    const Section s = static_cast<Section>(q);
    const int64_t rel = idx - begin(s);
    return {s, static_cast<int>(rel % count(s)), rel / count(s)};
  }
  const Entry& entry(int64_t idx) const {
    const Place p = locate(idx);
    return kSections[p.section].entries[p.entry];
  }
};

// ---- The per-frame block of a text-conditioned (centralized) initial tier: a second flat list, passed beside the
// tier's own (melnet_fast/ops/tier_sampling/centralized_weights.py documents the shapes). Its input projection,
// then per layer of the centralized stack the entries of LayerEntry, then with text the attention's.
namespace centralized {
enum InputEntry : int8_t { kInW, kInB, kInputCount };
enum LayerEntry : int8_t { kWih, kWhh, kBias, kH0, kC0, kProjW, kProjB, kLayerCount };
enum AttentionEntry : int8_t {
  kAWih,
  kAWhh,
  kABias,
  kAH0,
  kAC0,
  kWindowW,
  kWindowB,
  kContextW,
  kContextB,
  kAttentionCount
};
// Index of entry e of layer l, and of attention entry e, in a list for n_layers layers.
MF_LAYOUT constexpr int64_t layer_index(int64_t l, LayerEntry e) { return kInputCount + kLayerCount * l + e; }
MF_LAYOUT constexpr int64_t attention_index(int64_t n_layers, AttentionEntry e) {
  return kInputCount + kLayerCount * n_layers + e;
}
}  // namespace centralized

}  // namespace sampler_layout
}  // namespace melnet_fast

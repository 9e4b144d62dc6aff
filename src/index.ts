/** dcvideogen public API. */
export { DcvgError, ShapeError, DTypeError, AxisError, AutogradError, ValueError, FormatError, StateDictError, fmtShape, showValue } from './errors.js';
export {
  Tensor,
  tensor,
  scalar,
  zeros,
  ones,
  full,
  empty,
  zerosLike,
  arange,
  parameter,
  noGrad,
  isGradEnabled,
  numelOf,
  fromHostArray,
  intTensor,
  castTo,
  Storage,
  type GradFn,
  type TensorLike,
} from './tensor/tensor.js';
export * from './tensor/ops.js';
export * from './tensor/nn_ops.js';
export * from './tensor/inplace.js';
export { DTYPES, dtypeBytes, type DType } from './tensor/dtype.js';
export { Rng, randn, rand } from './tensor/random.js';
export { AdamW, clipGradNorm, type AdamWOptions } from './train/optim.js';
export {
  backend,
  setBackend,
  withBackend,
  backendByName,
  getNativeBackend,
  getNativeAddon,
  nativeUnavailableReason,
  referenceBackend,
} from './backend/index.js';
export type { Backend } from './backend/backend.js';
export { SafetensorsFile, loadSafetensors, saveSafetensors } from './io/safetensors.js';
export { Module, Param, formatLoadReport, type LoadReport, type TensorSource } from './nn/module.js';
export { TorchCheckpoint, loadTorchStateDict, readTorchCheckpointInfo } from './io/torch_checkpoint.js';
export * from './models/wan/index.js';
export * from './models/wan_vae/index.js';
export * from './models/umt5/index.js';
export * from './models/clip/index.js';
export * from './diffusion/index.js';
export * as video from './io/video.js';
export * as metrics from './metrics/metrics.js';
export { writeLinePlotPng, encodePng } from './metrics/plot.js';

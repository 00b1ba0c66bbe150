/**
 * File formats: gzip, .npy, safetensors, idx, PNG, a safe PyTorch checkpoint reader and a
 * torch.save writer, each reader bounded in what it allocates (see limits.ts).
 *
 * @module
 */
export * from "./host_tensor.ts";
export * from "./limits.ts";
export * from "./fs.ts";
export * from "./gzip.ts";
export * from "./npy.ts";
export * from "./safetensors.ts";
export * from "./idx.ts";
export * from "./png.ts";
export * from "./pickle.ts";
export * from "./torch.ts";
export * from "./zip.ts";
export * from "./torch_write.ts";

/**
 * File formats: gzip, .npy, safetensors, idx, PNG and a safe PyTorch checkpoint reader and a torch.save writer.
 *
 * @module
 */
export * from "./host_tensor.ts";
export * from "./fs.ts";
export * from "./gzip.ts";
export * from "./npy.ts";
export * from "./safetensors.ts";
export * from "./idx.ts";
export * from "./png.ts";
export * from "./pickle.ts";
export * from "./torch.ts";
export * from "./torch_write.ts";

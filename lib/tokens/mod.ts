/**
 * Token datasets in the official SeiT release format (reader, streaming writer, labels),
 * the VQ codebook, synonym dictionaries and dataset statistics.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./dataset.ts";
export * from "./writer.ts";
export * from "./labels.ts";
export * from "./codebook.ts";
export * from "./synonyms.ts";
export * from "./stats.ts";
export * from "./resample.ts";
export * from "./quantize.ts";
export * from "./transform_core.ts";
export * from "./transform_codes.ts";
export * from "./transform_maps.ts";
export * from "./storage.ts";
export * from "./histogram.ts";
export * from "./class_names.ts";

/**
 * The two-way bridge to the authors' PyTorch scripts (naver-ai/seit, SeiT++): a run config
 * as their `torchrun` launch line, and a run folder of theirs (log.txt, checkpoint-N.pth)
 * as one of ours, so runs trained on many GPUs plot next to ours.
 *
 * @module
 */
export * from "./authors_args.ts";
export * from "./authors_log.ts";
export * from "./import_run.ts";
export * from "./export_run.ts";

/**
 * The paper's published numbers (REFERENCE.md section 7), shared by the figures and the
 * effect tables.
 *
 * @module
 */

/** The published numbers of REFERENCE.md section 7 (ImageNet-1k, ViT-B; ablation ViT-S, ImageNet-100). */
export const PAPER_RESULTS = {
  storage: [
    { storage: "1.4 GB", seit: 74.0, seit_mtm: 75.1, seitpp_nomtm: 75.5, seitpp: 77.8 },
    { storage: "0.8 GB", seit: 66.3, seit_mtm: 70.6, seitpp_nomtm: 69.1, seitpp: 74.1 },
    { storage: "0.3 GB", seit: 47.2, seit_mtm: 53.9, seitpp_nomtm: 51.2, seitpp: 60.6 },
  ],
  pixels: [
    { what: "pixels", storage: "140 GB", top1: 81.8 },
    { what: "JPEG q5", storage: "11 GB", top1: 74.6 },
    { what: "x0.2 downsampled", storage: "9.6 GB", top1: 75.2 },
  ],
  ablation: { seit: 77.3, coloradapt: 78.3, tokenadapt: 80.4, seitpp: 81.4 },
} as const;

/**
 * Class names of the label sets this project ships, so tables and figures can say "Sneaker"
 * rather than 7.
 *
 * @module
 */

/**
 * The ten Fashion-MNIST classes, indexed by label (data/README.md, the embedded dataset).
 *
 * @example
 * ```ts
 * import { FASHION_MNIST_CLASSES } from "@lib/tokens";
 * console.assert(FASHION_MNIST_CLASSES[9] === "Ankle boot");
 * ```
 */
export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
]);

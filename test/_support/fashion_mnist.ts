/**
 * The Fashion-MNIST sample shipped in test/fixtures/fashion-mnist (see its README): tests read
 * these instead of Debian's dataset-fashion-mnist, so they need no system dataset.
 */
const DIR = decodeURIComponent(new URL("../fixtures/fashion-mnist", import.meta.url).pathname);

/** The first 500 test images, `[500, 28, 28]` uint8, gzipped idx3. */
export const SAMPLE_IMAGES = `${DIR}/t10k-images-500-idx3-ubyte.gz`;
/** Their 500 labels, `[500]` uint8, gzipped idx1. */
export const SAMPLE_LABELS = `${DIR}/t10k-labels-500-idx1-ubyte.gz`;
/** Number of images (and labels) in the sample. */
export const SAMPLE_SIZE = 500;
/** All 10000 test labels (the original file). */
export const TEST_LABELS = `${DIR}/t10k-labels-idx1-ubyte.gz`;
/** All 60000 training labels (the original file). */
export const TRAIN_LABELS = `${DIR}/train-labels-idx1-ubyte.gz`;

/**
 * A parity fixture folder: meta.json plus safetensors files made by the reference code.
 *
 * @module
 */
import { type HostTensor, readSafetensorsFile } from "../io/mod.ts";
import { parseTolerance, type ToleranceSpec } from "./compare.ts";

/** A loaded fixture folder with cached files. */
export class Fixture {
  /** The folder path. */
  readonly dir: string;
  /** The parsed meta.json. */
  readonly meta: Record<string, unknown>;
  #files = new Map<string, Map<string, HostTensor>>();

  private constructor(dir: string, meta: Record<string, unknown>) {
    this.dir = dir;
    this.meta = meta;
  }

  /**
   * Open a fixture folder.
   * @param dir folder holding meta.json
   * @returns the fixture
   * @throws {Deno.errors.NotFound} when meta.json is missing
   * @throws {SyntaxError} when meta.json is not JSON
   */
  static async open(dir: string): Promise<Fixture> {
    const path = `${dir.replace(/\/$/, "")}/meta.json`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(`No parity fixture at "${dir}": ${path} does not exist`);
      }
      throw e;
    }
    let meta: Record<string, unknown>;
    try {
      meta = JSON.parse(text);
    } catch (e) {
      throw new SyntaxError(`Cannot parse "${path}": ${(e as Error).message}`);
    }
    return new Fixture(dir.replace(/\/$/, ""), meta);
  }

  /**
   * @param name a file name in the folder
   * @returns its path
   */
  path(name: string): string {
    return `${this.dir}/${name}`;
  }

  /**
   * All tensors of a safetensors file of the fixture (cached).
   * @param file e.g. `mtm_io.safetensors`
   * @returns tensors by name
   */
  async file(file: string): Promise<Map<string, HostTensor>> {
    let t = this.#files.get(file);
    if (t === undefined) {
      t = (await readSafetensorsFile(this.path(file))).tensors;
      this.#files.set(file, t);
    }
    return t;
  }

  /**
   * One tensor of a fixture file.
   * @param file e.g. `mtm_io.safetensors`
   * @param name tensor name
   * @returns the tensor
   * @throws {RangeError} when the file has no such tensor
   */
  async tensor(file: string, name: string): Promise<HostTensor> {
    const t = (await this.file(file)).get(name);
    if (t === undefined) {
      throw new RangeError(`Fixture file "${this.path(file)}" has no tensor "${name}"`);
    }
    return t;
  }

  /**
   * A value from meta.json by dotted path, e.g. `mtm.mask_ratio`.
   * @param path dotted path
   * @returns the value
   * @throws {RangeError} when it is missing
   */
  get<T = unknown>(path: string): T {
    let v: unknown = this.meta;
    for (const k of path.split(".")) {
      if (v === null || typeof v !== "object" || !(k in (v as Record<string, unknown>))) {
        throw new RangeError(`Fixture meta.json in "${this.dir}" has no "${path}"`);
      }
      v = (v as Record<string, unknown>)[k];
    }
    return v as T;
  }

  /**
   * A tolerance from meta.json `tolerances.<key>` (`rtol`, `atol` as number or expression).
   * @param key e.g. `mtm_io_and_cls_io`, `gradients`, `losses`
   * @returns the parsed spec
   */
  tolerance(key: string): ToleranceSpec {
    const t = this.get<{ rtol: number | string; atol: number | string }>(`tolerances.${key}`);
    return parseTolerance(t.rtol, t.atol);
  }
}

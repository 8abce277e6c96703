/**
 * The TypeScript type of a value that passed a JSON Schema written `as const`
 * (the configuration schema in schema.ts), so the schema is the one source of
 * truth and the types cannot drift from it. Covers the keywords that schema
 * uses: `type` (one or a list), `enum`, `anyOf`, `items`, `properties`,
 * `required`, `additionalProperties`, and `default` (Ajv fills defaults in, so
 * a property with a default is always present after validation).
 */
export type FromSchema<S> = S extends { readonly enum: readonly (infer E)[] }
  ? E
  : S extends { readonly anyOf: readonly (infer A)[] }
    ? FromSchema<A>
    : S extends { readonly type: readonly (infer T)[] }
      ? PrimitiveOf<T>
      : S extends { readonly type: 'array'; readonly items: infer I }
        ? FromSchema<I>[]
        : S extends { readonly type: 'object'; readonly properties: infer P }
          ? ObjectOf<P, RequiredKeys<S> | DefaultedKeys<P>>
          : S extends { readonly type: 'object'; readonly additionalProperties: infer A }
            ? Record<string, FromSchema<A>>
            : S extends { readonly type: infer T }
              ? PrimitiveOf<T>
              : unknown;

type PrimitiveOf<T> = T extends 'string'
  ? string
  : T extends 'number' | 'integer'
    ? number
    : T extends 'boolean'
      ? boolean
      : never;

type RequiredKeys<S> = S extends { readonly required: readonly (infer K)[] } ? K : never;

type DefaultedKeys<P> = {
  [K in keyof P]: P[K] extends { readonly default: unknown } ? K : never;
}[keyof P];

/** Present keys are required or defaulted; the others are optional. Mutable: loading resolves paths in place. */
type ObjectOf<P, Present> = Flatten<
  { -readonly [K in keyof P as K extends Present ? K : never]: FromSchema<P[K]> } & {
    -readonly [K in keyof P as K extends Present ? never : K]?: FromSchema<P[K]>;
  }
>;

type Flatten<T> = { [K in keyof T]: T[K] } & {};

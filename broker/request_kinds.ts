// What the broker decides per request kind before looking at a request's values: refused by
// policy, or refused because the request or its response can carry a pointer field the broker
// does not carry (pointer_fields.ts). Decided from the schema once per kind.
import { FfiRequest, FfiResponse, planOf, type SchemaType } from './livekit_schema.js';
import { pointerField } from './pointer_fields.js';
import { refuse, type Refusal } from './errors.js';

// Requests that act on the whole library rather than on what the session owns.
const POLICY: Record<string, () => Refusal> = {
  dispose: refuse.dispose,
};

function reachablePointers(root: SchemaType): { typeName: string; field: string }[] {
  const found: { typeName: string; field: string }[] = [];
  const seen = new Set<string>();
  const visit = (type: SchemaType) => {
    if (seen.has(type.typeName)) return;
    seen.add(type.typeName);
    const plan = planOf(type);
    for (const f of plan.pointers) found.push({ typeName: type.typeName, field: f.name });
    for (const f of plan.children) visit(f.T as SchemaType);
  };
  visit(root);
  return found;
}

function fieldType(root: SchemaType, localName: string): SchemaType | undefined {
  const field = root.fields.list().find((f) => f.localName === localName);
  return field?.kind === 'message' ? (field.T as SchemaType) : undefined;
}

const verdicts = new Map<string, Refusal | null>();

/** null when requests of this kind may go to the library; else the refusal to answer with. */
export function kindVerdict(kind: string, typeName: string): Refusal | null {
  let verdict = verdicts.get(kind);
  if (verdict !== undefined) return verdict;
  verdict = POLICY[kind]?.() ?? null;
  if (verdict === null) {
    const requestType = fieldType(FfiRequest as unknown as SchemaType, kind);
    const responseType = fieldType(FfiResponse as unknown as SchemaType, kind);
    const inbound = requestType ? reachablePointers(requestType).find((p) => !pointerField(p.typeName, p.field)?.request) : undefined;
    const outbound = responseType ? reachablePointers(responseType).find((p) => !pointerField(p.typeName, p.field)?.output) : undefined;
    const missing = inbound ?? outbound;
    if (missing !== undefined) verdict = refuse.unsupportedPointer(typeName, `${missing.typeName.replace('livekit.proto.', '')}.${missing.field}`);
  }
  verdicts.set(kind, verdict);
  return verdict;
}

const carriesPointers = new Map<string, boolean>();

/** Whether requests of this kind can carry a pointer field at all (from the schema, once per kind). */
export function requestCarriesPointers(kind: string): boolean {
  let carries = carriesPointers.get(kind);
  if (carries === undefined) {
    const requestType = fieldType(FfiRequest as unknown as SchemaType, kind);
    carries = requestType !== undefined && reachablePointers(requestType).length > 0;
    carriesPointers.set(kind, carries);
  }
  return carries;
}

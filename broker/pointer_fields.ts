// The table of pointer fields (proto/pointer_fields.json, shared with the clients) compiled for the
// broker: per message type and field, a function giving the bytes the pointer covers, and what
// each direction does with the memory. A pointer field not in the table is never sent to the
// library: requests that could carry one are refused (request_kinds.ts).
import fs from 'node:fs';
import path from 'node:path';
import { localFieldName, typeByName, type SchemaMessage, type SchemaType } from './livekit_schema.js';
import { packageRoot } from './paths.js';
import { videoFrameBytes } from './video_layout.js';

export const POINTER_TABLE_PATH = path.join(packageRoot, 'proto', 'pointer_fields.json');

type SizeRule = { product: string[]; times: number } | { field: string } | { video: 'frame' };

interface TableEntry {
  message: string;
  field: string;
  size: SizeRule;
  request?: 'copy-in' | 'in-out';
  output?: 'copy-out';
  lifetime: string;
}

interface PointerTable {
  fields: TableEntry[];
  memory_handles: { types: string[] };
}

export interface PointerField {
  typeName: string;
  field: string;
  /** Bytes the pointer covers, from the message holding it. */
  size(holder: SchemaMessage): number;
  request: 'copy-in' | 'in-out' | undefined;
  output: 'copy-out' | undefined;
}

const localName = (type: SchemaType, protoName: string): string => localFieldName(type, protoName, POINTER_TABLE_PATH);

function compileSize(type: SchemaType, rule: SizeRule): (holder: SchemaMessage) => number {
  if ('video' in rule) return videoFrameBytes;
  if ('field' in rule) {
    const name = localName(type, rule.field);
    return (holder) => Number(holder[name] ?? 0);
  }
  const names = rule.product.map((f) => localName(type, f));
  return (holder) => names.reduce((acc, name) => acc * Number(holder[name] ?? 0), rule.times);
}

function load(): { fields: Map<string, PointerField>; memoryHandles: Set<string> } {
  const table = JSON.parse(fs.readFileSync(POINTER_TABLE_PATH, 'utf8')) as PointerTable;
  const fields = new Map<string, PointerField>();
  for (const entry of table.fields) {
    const type = typeByName(entry.message);
    if (type === undefined) throw new Error(`${POINTER_TABLE_PATH}: ${entry.message} is not in the pinned schema`);
    localName(type, entry.field);
    fields.set(`${entry.message}.${entry.field}`, {
      typeName: entry.message,
      field: entry.field,
      size: compileSize(type, entry.size),
      request: entry.request,
      output: entry.output,
    });
  }
  return { fields, memoryHandles: new Set(table.memory_handles.types) };
}

const table = load();

/** Owned* messages whose handle exists only to keep the memory behind their pointers alive. */
export const MEMORY_HANDLE_TYPES: ReadonlySet<string> = table.memoryHandles;

export function pointerField(typeName: string, field: string): PointerField | undefined {
  return table.fields.get(`${typeName}.${field}`);
}

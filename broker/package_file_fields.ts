// The table of request fields that name files of installed packages (proto/package_file_fields.json,
// shared with the clients), compiled for the broker: per request type, the fields to map onto the
// broker's own copies (host_policy.ts) and how each holds its paths.
import fs from 'node:fs';
import path from 'node:path';
import { localFieldName, typeByName } from './livekit_schema.js';
import { packageRoot } from './paths.js';

export const PACKAGE_FILE_TABLE_PATH = path.join(packageRoot, 'proto', 'package_file_fields.json');

export interface PackageFileField {
  /** The proto name, for messages (e.g. "plugin_path"). */
  field: string;
  /** The name on the decoded message (e.g. "pluginPath"). */
  localName: string;
  /** path: a path or a list of paths; json: a JSON document whose path strings are paths. */
  holds: 'path' | 'json';
}

interface TableEntry {
  message: string;
  field: string;
  holds: 'path' | 'json';
}

function load(): Map<string, PackageFileField[]> {
  const table = JSON.parse(fs.readFileSync(PACKAGE_FILE_TABLE_PATH, 'utf8')) as { fields: TableEntry[] };
  const byType = new Map<string, PackageFileField[]>();
  for (const entry of table.fields) {
    const type = typeByName(entry.message);
    if (type === undefined) throw new Error(`${PACKAGE_FILE_TABLE_PATH}: ${entry.message} is not in the pinned schema`);
    const fields = byType.get(entry.message) ?? [];
    fields.push({ field: entry.field, localName: localFieldName(type, entry.field, PACKAGE_FILE_TABLE_PATH), holds: entry.holds });
    byType.set(entry.message, fields);
  }
  return byType;
}

const table = load();

/** The fields of request type `typeName` (full name, e.g. "livekit.proto.LoadAudioFilterPluginRequest") that name package files. */
export function packageFileFields(typeName: string): readonly PackageFileField[] {
  return table.get(typeName) ?? [];
}

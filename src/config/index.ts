export { ConfigError, type ConfigErrorOptions } from './errors.ts';
export { parseYaml, validateAgainst, explainSchemaError, YamlLocator, pathSegments, fieldName, describeValue, type ParsedYaml, type PathSegment } from './yaml-schema.ts';

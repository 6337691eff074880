/** Types of the debug package (the one ioredis logs through), which ships none: the part ./redis-link.ts uses. */
declare module 'debug' {
  interface Debug {
    /** Turns every namespace off and returns the ones that were on, as DEBUG spells them. */
    disable(): string
    /** Turns these namespaces on (a leading `-` turns one off); also writes them to process.env.DEBUG. */
    enable(namespaces: string): void
  }

  const debug: Debug
  export default debug
}

# Builds rdrop's API reference with Doxygen, every warning an error.
#   cmake -DSOURCE_DIR=<rdrop> -DOUTPUT_DIR=<dir> -DDOXYGEN=<doxygen>
#         -DVERSION=<x.y.z> [-DPROBE=ON] -P run_doxygen.cmake
# PROBE=ON checks the check: it runs on a copy of the headers with an
# undocumented function, enumerator, class, namespace and macro (in detail/)
# added, and passes only if the check fails on every one of them.
foreach(var SOURCE_DIR OUTPUT_DIR DOXYGEN VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_doxygen.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${OUTPUT_DIR}")
file(MAKE_DIRECTORY "${OUTPUT_DIR}")

set(headers "${SOURCE_DIR}/include/rdrop")
# The probe: one undocumented name of each kind the check must catch.
set(probe_names rdrop_reference_probe_function rdrop_reference_probe_enumerator RdropReferenceProbeStruct
                rdrop_reference_probe_namespace RDROP_REFERENCE_PROBE_MACRO)
if(PROBE)
  set(headers "${OUTPUT_DIR}/include/rdrop")
  file(COPY "${SOURCE_DIR}/include/rdrop/" DESTINATION "${headers}")
  file(APPEND "${headers}/reduction.hpp" "
namespace rdrop {
inline int rdrop_reference_probe_function(int x) { return x; }
/// A documented enumeration with one undocumented enumerator.
enum class RdropReferenceProbeEnum {
  documented_value,  ///< documented
  rdrop_reference_probe_enumerator
};
struct RdropReferenceProbeStruct {};
namespace rdrop_reference_probe_namespace {
/// A documented name in an undocumented namespace.
inline constexpr int documented_value = 1;
}  // namespace rdrop_reference_probe_namespace
}  // namespace rdrop
")
  file(APPEND "${headers}/detail/errors.hpp" "\n#define RDROP_REFERENCE_PROBE_MACRO 1\n")
endif()

# Every runnable program of the documentation and every example trainer
# appears under "Examples".
file(GLOB doc_examples RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/docs/examples/*.cpp")
file(GLOB trainers RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/examples/*/main.cpp")
set(examples_dox "/// \\file examples.dox\n")
foreach(example IN LISTS doc_examples trainers)
  string(APPEND examples_dox "/// \\example ${example}\n")
endforeach()
file(WRITE "${OUTPUT_DIR}/examples.dox" "${examples_dox}")

file(GLOB pages "${SOURCE_DIR}/docs/*.md")
list(APPEND pages "${SOURCE_DIR}/docs/reference/mainpage.md")
set(RDROP_VERSION "${VERSION}")
set(RDROP_SOURCE_DIR "${SOURCE_DIR}")
set(RDROP_DOXYGEN_OUTPUT "${OUTPUT_DIR}")
set(RDROP_DOXYGEN_STRIP "${SOURCE_DIR}")
if(PROBE)
  set(RDROP_DOXYGEN_STRIP "${OUTPUT_DIR}")
endif()
list(JOIN pages " " pages)
# detail/ is read too, for its macros (its namespace is excluded).
set(RDROP_DOXYGEN_INPUT "${headers} ${headers}/detail ${pages} ${OUTPUT_DIR}/examples.dox")
configure_file("${SOURCE_DIR}/docs/reference/Doxyfile.in" "${OUTPUT_DIR}/Doxyfile" @ONLY)

execute_process(COMMAND "${DOXYGEN}" "${OUTPUT_DIR}/Doxyfile"
                WORKING_DIRECTORY "${OUTPUT_DIR}"
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(warnings "")
if(EXISTS "${OUTPUT_DIR}/warnings.log")
  file(READ "${OUTPUT_DIR}/warnings.log" warnings)
endif()

# What Doxygen 1.9 does not warn about, from its XML: an enumerator, a class
# or a namespace without documentation (an empty struct has no member to warn
# about), and a macro of any header, detail/ included, unless it is named
# RDROP_DETAIL_*. A line-by-line scan: a documented item has a <para> in its
# brief or detailed description.
file(GLOB xml_files "${OUTPUT_DIR}/xml/*.xml")
foreach(xml IN LISTS xml_files)
  get_filename_component(xml_name "${xml}" NAME)
  if(xml_name MATCHES "^(index|Doxyfile|dir_)" OR xml_name MATCHES "_8md\\.xml$" OR xml_name MATCHES "\\.dox")
    continue()
  endif()
  file(STRINGS "${xml}" lines)
  set(kind "")          # the item being read: define, enumvalue or compound
  set(compound "")
  set(in_member FALSE)
  set(in_compound_text FALSE)
  set(compound_documented FALSE)
  foreach(line IN LISTS lines)
    if(line MATCHES "<compounddef [^>]*kind=\"(class|struct|union|namespace)\"")
      set(compound_kind "${CMAKE_MATCH_1}")
      set(compound_documented FALSE)
      # A private or protected nested class is not API.
      if(line MATCHES "prot=\"(private|protected)\"")
        set(compound_kind "")
      endif()
    elseif(line MATCHES "<compoundname>([^<]*)</compoundname>")
      set(compound "${CMAKE_MATCH_1}")
      # Namespaces rdrop's code names (std, torch) are not rdrop's to document.
      if(compound_kind STREQUAL "namespace" AND NOT compound MATCHES "^rdrop(::|$)")
        set(compound_kind "")
      endif()
    elseif(line MATCHES "<memberdef kind=\"define\"")
      set(kind define)
      set(documented FALSE)
    elseif(line MATCHES "<memberdef ")
      set(in_member TRUE)
    elseif(line MATCHES "</memberdef>")
      if(kind STREQUAL "define" AND NOT documented AND NOT item MATCHES "^RDROP_DETAIL_")
        string(APPEND warnings "${xml_name}: macro ${item} is not documented (or name it RDROP_DETAIL_*)\n")
      endif()
      set(kind "")
      set(in_member FALSE)
    elseif(line MATCHES "<enumvalue ")
      set(kind enumvalue)
      set(documented FALSE)
    elseif(line MATCHES "</enumvalue>")
      if(NOT documented)
        string(APPEND warnings "${xml_name}: enumerator ${item} of ${compound} is not documented\n")
      endif()
      set(kind "")
    elseif(line MATCHES "<name>([^<]*)</name>" AND NOT kind STREQUAL "")
      set(item "${CMAKE_MATCH_1}")
    elseif(line MATCHES "<para>")
      if(NOT kind STREQUAL "")
        set(documented TRUE)
      elseif(NOT in_member)
        set(compound_documented TRUE)
      endif()
    elseif(line MATCHES "</compounddef>")
      if(compound_kind AND NOT compound_documented)
        string(APPEND warnings "${xml_name}: ${compound_kind} ${compound} is not documented\n")
      endif()
      set(compound_kind "")
    endif()
  endforeach()
endforeach()
if(NOT warnings STREQUAL "")
  set(result 1)
endif()

if(PROBE)
  set(missed "")
  foreach(name IN LISTS probe_names)
    if(NOT warnings MATCHES "${name}")
      list(APPEND missed ${name})
    endif()
  endforeach()
  if(result EQUAL 0 OR missed)
    message(FATAL_ERROR "The documentation check let undocumented public names through (${missed}; "
                        "exit ${result}):\n${warnings}${out}${err}")
  endif()
  message(STATUS "The documentation check failed, as it must, on each undocumented probe:\n${warnings}")
elseif(NOT result EQUAL 0 OR NOT warnings STREQUAL "")
  message(FATAL_ERROR "Doxygen (exit ${result}): every public name needs documentation, "
                      "and the pages must build without warnings:\n${warnings}${out}${err}")
else()
  message(STATUS "API reference: ${OUTPUT_DIR}/html/index.html")
endif()
